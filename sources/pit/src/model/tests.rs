//! The model against the 8254 datasheet, clock by clock.
//!
//! Time is virtual: `edge(j)` is the instant of PIT clock edge `j`, so
//! every count and every OUT level is asserted exactly.

use std::sync::Arc;
use std::vec::Vec;

use clocksource::Ktime;
use hw::{InterruptSource, PortIo};
use sim::VirtualClock;

use super::{Crystal, PitModel, Quirks};
use crate::regs::{port, Channel, PortB, Status};

/// The instant of clock edge `j`.
fn edge(j: u64) -> Ktime {
    Crystal::raw_time(j)
}

/// Just before clock edge `j` (the count of edge `j − 1` still stands).
fn before(j: u64) -> Ktime {
    Ktime::from_nanos(edge(j).as_nanos() - 1)
}

fn model() -> (Arc<VirtualClock>, &'static PitModel) {
    let clock = VirtualClock::new();
    let m = PitModel::new(clock.clone()).leak();
    (clock, m)
}

fn latch_lohi(m: &PitModel, ch: Channel) -> u16 {
    m.outb(port::COMMAND, (ch as u8) << 6);
    let lo = m.inb(ch.data_port());
    let hi = m.inb(ch.data_port());
    u16::from_le_bytes([lo, hi])
}

fn write_lohi(m: &PitModel, ch: Channel, count: u16) {
    let [lo, hi] = count.to_le_bytes();
    m.outb(ch.data_port(), lo);
    m.outb(ch.data_port(), hi);
}

/// Program `ch` for LSB/MSB `mode`, binary.
fn program(m: &PitModel, ch: Channel, mode: u8) {
    m.outb(port::COMMAND, (ch as u8) << 6 | 0x30 | mode << 1);
}

#[test]
fn mode0_output_goes_high_at_terminal_count_once() {
    let (clock, m) = model();
    clock.advance_to(Ktime::from_nanos(500)); // between edges 0 and 1
    program(m, Channel::Ch0, 0);
    assert!(
        !m.out(Channel::Ch0),
        "mode 0: OUT low after the control word"
    );
    write_lohi(m, Channel::Ch0, 3);
    // Written during edge 0's period; loaded at edge 1; 3 → 0 at edge 4.
    clock.advance_to(before(4));
    assert!(!m.out(Channel::Ch0));
    assert_eq!(m.peek_count(Channel::Ch0), 1);
    assert_eq!(
        m.next_fire(),
        Some(edge(4)),
        "N + 1 = 4 clocks after the write"
    );
    clock.advance_to(edge(4));
    assert!(m.out(Channel::Ch0));
    assert!(m.fire());
    // It keeps counting (wraps to 0xFFFF) and OUT stays high: no second
    // interrupt, ever.
    clock.advance_to(edge(4 + 65_536 * 3));
    assert!(m.out(Channel::Ch0));
    assert_eq!(m.peek_count(Channel::Ch0), 0);
    assert_eq!(m.next_fire(), None);
    assert!(!m.fire());
    assert_eq!(m.interrupts(), 1);
}

#[test]
fn mode2_period_is_n_clocks() {
    let (clock, m) = model();
    program(m, Channel::Ch0, 2);
    write_lohi(m, Channel::Ch0, 5); // at edge 0: loads at 1
    let mut fired = Vec::new();
    for _ in 0..4 {
        let t = m.next_fire().unwrap();
        clock.advance_to(t);
        assert!(m.fire());
        fired.push(t);
    }
    // Rising edges (reloads) at 1 + 5j; the control word itself raised OUT
    // from mode 0's low at power-on: that first edge came at once.
    assert_eq!(fired, [Ktime::ZERO, edge(6), edge(11), edge(16)]);
    // OUT is low for exactly one clock, while the count is 1.
    clock.advance_to(edge(19));
    assert!(m.out(Channel::Ch0));
    assert_eq!(m.peek_count(Channel::Ch0), 2);
    clock.advance_to(edge(20));
    assert!(!m.out(Channel::Ch0));
    assert_eq!(m.peek_count(Channel::Ch0), 1);
    clock.advance_to(edge(21));
    assert!(m.out(Channel::Ch0));
    assert_eq!(m.peek_count(Channel::Ch0), 5);
}

#[test]
fn count_zero_means_65536() {
    let (clock, m) = model();
    program(m, Channel::Ch2, 2);
    m.outb(port::PORT_B, PortB::TIMER2_GATE.bits());
    write_lohi(m, Channel::Ch2, 0);
    clock.advance_to(edge(1));
    assert_eq!(latch_lohi(m, Channel::Ch2), 0, "65536 loaded, held as 0");
    clock.advance_to(edge(2));
    assert_eq!(latch_lohi(m, Channel::Ch2), 0xFFFF);
    // OUT2 low for the one clock at count 1: 65535 clocks after the load.
    clock.advance_to(edge(65_536));
    assert_eq!(latch_lohi(m, Channel::Ch2), 1);
    assert!(!m.out(Channel::Ch2));
    clock.advance_to(edge(65_537));
    assert_eq!(latch_lohi(m, Channel::Ch2), 0, "reloaded: period 65536");
    assert!(m.out(Channel::Ch2));
}

#[test]
fn latch_holds_value_while_counting() {
    let (clock, m) = model();
    program(m, Channel::Ch0, 2);
    write_lohi(m, Channel::Ch0, 1000);
    clock.advance_to(edge(101)); // 100 clocks after the load: 900
    m.outb(port::COMMAND, 0x00);
    clock.advance_to(edge(350));
    // A second latch before the first is read is ignored.
    m.outb(port::COMMAND, 0x00);
    assert_eq!(m.inb(port::CHANNEL0), (900u16 & 0xFF) as u8);
    clock.advance_to(edge(700));
    assert_eq!(m.inb(port::CHANNEL0), (900u16 >> 8) as u8);
    // Released after both bytes: the next read is live (1000 − 699 = 301).
    assert_eq!(latch_lohi(m, Channel::Ch0), 301);
}

#[test]
fn unlatched_lohi_read_can_tear_where_a_latched_one_cannot() {
    let (clock, m) = model();
    program(m, Channel::Ch0, 2);
    write_lohi(m, Channel::Ch0, 0x0200);
    clock.advance_to(edge(0x100)); // 0x200 − 0xFF = 0x101
    let lo = m.inb(port::CHANNEL0);
    clock.advance_to(edge(0x102)); // now 0x0FF: the MSB dropped
    let hi = m.inb(port::CHANNEL0);
    assert_eq!(
        u16::from_le_bytes([lo, hi]),
        0x0001,
        "torn: LSB of 0x101, MSB of 0xFF"
    );
    assert_eq!(latch_lohi(m, Channel::Ch0), 0x00FF);
}

#[test]
fn lohi_byte_order() {
    let (clock, m) = model();
    program(m, Channel::Ch0, 2);
    // LSB first, then MSB: 0x1234.
    m.outb(port::CHANNEL0, 0x34);
    m.outb(port::CHANNEL0, 0x12);
    clock.advance_to(edge(1));
    assert_eq!(latch_lohi(m, Channel::Ch0), 0x1234);
    // LSB-only access: MSB reads 0, one read per latch.
    m.outb(port::COMMAND, 0x14); // ch0, LSB only, mode 2
    m.outb(port::CHANNEL0, 0x80);
    clock.advance_to(edge(3)); // loaded at 2: one clock → 0x7F
    m.outb(port::COMMAND, 0x00);
    assert_eq!(m.inb(port::CHANNEL0), 0x7F);
    // MSB-only: the count is byte << 8.
    m.outb(port::COMMAND, 0x24);
    m.outb(port::CHANNEL0, 0x02);
    clock.advance_to(edge(4));
    assert_eq!(m.peek_count(Channel::Ch0), 0x200);
    assert_eq!(m.inb(port::CHANNEL0), 0x02);
    // A control word resets the flip-flop: half a LoHi write is forgotten.
    program(m, Channel::Ch0, 2);
    m.outb(port::CHANNEL0, 0xAA);
    program(m, Channel::Ch0, 2);
    write_lohi(m, Channel::Ch0, 0x0456);
    clock.advance_to(edge(5));
    assert_eq!(latch_lohi(m, Channel::Ch0), 0x0456);
}

#[test]
fn gate_low_stops_channel2() {
    let (clock, m) = model();
    program(m, Channel::Ch2, 2);
    write_lohi(m, Channel::Ch2, 100);
    clock.advance_to(edge(50));
    assert_eq!(
        latch_lohi(m, Channel::Ch2),
        100,
        "GATE2 low at power-on: no counting"
    );
    m.outb(port::PORT_B, PortB::TIMER2_GATE.bits()); // rising gate at edge 50: reload at 51
    clock.advance_to(edge(61));
    assert_eq!(latch_lohi(m, Channel::Ch2), 90);
    m.outb(port::PORT_B, 0); // gate low: counting stops, OUT2 high
    clock.advance_to(edge(500));
    assert_eq!(latch_lohi(m, Channel::Ch2), 90);
    assert!(m.out(Channel::Ch2));
    // Mode 2 restarts from the full count on the next rising edge of GATE.
    m.outb(port::PORT_B, PortB::TIMER2_GATE.bits());
    clock.advance_to(edge(511));
    assert_eq!(
        latch_lohi(m, Channel::Ch2),
        90,
        "reloaded at 501, 10 clocks"
    );
    // OUT2 on port B bit 5: low for the clock at count 1.
    clock.advance_to(edge(501 + 99));
    assert_eq!(m.inb(port::PORT_B) & PortB::TIMER2_OUT.bits(), 0);
    clock.advance_to(edge(501 + 100));
    assert_ne!(m.inb(port::PORT_B) & PortB::TIMER2_OUT.bits(), 0);
}

#[test]
fn gate_low_suspends_mode0_which_resumes_where_it_was() {
    // Linux's pit_calibrate_tsc: mode 0 on counter 2, polling OUT2.
    let (clock, m) = model();
    m.outb(port::PORT_B, PortB::TIMER2_GATE.bits());
    m.outb(port::COMMAND, 0xB0);
    write_lohi(m, Channel::Ch2, 10);
    clock.advance_to(edge(5)); // loaded at 1: 10 − 4 = 6
    m.outb(port::PORT_B, 0);
    clock.advance_to(edge(1_000));
    assert_eq!(m.peek_count(Channel::Ch2), 6);
    m.outb(port::PORT_B, PortB::TIMER2_GATE.bits());
    clock.advance_to(edge(1_005));
    assert_eq!(m.peek_count(Channel::Ch2), 1);
    assert!(!m.out(Channel::Ch2));
    clock.advance_to(edge(1_006));
    assert!(
        m.out(Channel::Ch2),
        "terminal count 10 counting clocks after the load"
    );
    assert_ne!(m.inb(port::PORT_B) & 0x20, 0);
}

#[test]
fn mode0_lsb_write_stops_counting_and_drives_out_low() {
    let (clock, m) = model();
    program(m, Channel::Ch0, 0);
    write_lohi(m, Channel::Ch0, 10);
    clock.advance_to(edge(20));
    assert!(m.out(Channel::Ch0));
    assert!(m.fire());
    m.outb(port::CHANNEL0, 5); // LSB: stop, OUT low
    assert!(!m.out(Channel::Ch0));
    clock.advance_to(edge(40));
    // Loaded at 1, so at edge 20 it had counted 19 past 10: 0x10000 − 9.
    assert_eq!(
        m.peek_count(Channel::Ch0),
        65_536 - 9,
        "frozen since the LSB"
    );
    m.outb(port::CHANNEL0, 0); // MSB: 5 loads at 41, OUT rises at 46
    assert_eq!(m.next_fire(), Some(edge(46)));
}

#[test]
fn mode2_new_count_takes_effect_at_the_end_of_the_period() {
    let (clock, m) = model();
    let mut fired = Vec::new();
    let fire_until = |m: &PitModel, t: Ktime, fired: &mut Vec<Ktime>| {
        while let Some(at) = m.next_fire().filter(|at| *at <= t) {
            clock.advance_to(at);
            assert!(m.fire());
            fired.push(at);
        }
        clock.advance_to(t);
    };
    program(m, Channel::Ch0, 2);
    write_lohi(m, Channel::Ch0, 10); // loads at 1, reloads at 11, 21, …
    fire_until(m, edge(14), &mut fired);
    write_lohi(m, Channel::Ch0, 4); // the current period ends at 21
    m.outb(port::COMMAND, 0xE2); // read-back: status of counter 0
    let status = Status::from_bits_retain(m.inb(port::CHANNEL0));
    assert!(
        status.contains(Status::NULL_COUNT),
        "written, not yet loaded"
    );
    fire_until(m, edge(20), &mut fired);
    assert_eq!(m.peek_count(Channel::Ch0), 1);
    fire_until(m, edge(21), &mut fired);
    assert_eq!(m.peek_count(Channel::Ch0), 4);
    m.outb(port::COMMAND, 0xE2);
    assert!(!Status::from_bits_retain(m.inb(port::CHANNEL0)).contains(Status::NULL_COUNT));
    fire_until(m, edge(29), &mut fired);
    // The control word's edge at 0, then 11, 21, then every 4.
    assert_eq!(fired, [Ktime::ZERO, edge(11), edge(21), edge(25), edge(29)]);
}

#[test]
fn mode3_square_wave_is_high_half_the_period() {
    let (clock, m) = model();
    program(m, Channel::Ch0, 3);
    write_lohi(m, Channel::Ch0, 5); // loads at 1
    let outs: Vec<bool> = (1..=11)
        .map(|j| {
            clock.advance_to(edge(j));
            m.out(Channel::Ch0)
        })
        .collect();
    // High for 3 clocks, low for 2 (odd N).
    assert_eq!(
        outs,
        [true, true, true, false, false, true, true, true, false, false, true]
    );
}

#[test]
fn mode4_strobe_is_one_clock_low_and_interrupts_once() {
    // Linux's one-shot control word 0x38.
    let (clock, m) = model();
    m.outb(port::COMMAND, 0x38);
    assert!(m.out(Channel::Ch0), "mode 4 starts high");
    assert!(m.fire(), "raised from power-on low: one edge");
    write_lohi(m, Channel::Ch0, 3); // loads at 1, count 0 at 4
    clock.advance_to(edge(4));
    assert!(!m.out(Channel::Ch0));
    clock.advance_to(edge(5));
    assert!(m.out(Channel::Ch0));
    assert!(m.fire());
    clock.advance_to(edge(5 + 3 * 65_536));
    assert_eq!(m.next_fire(), None);
    assert_eq!(m.interrupts(), 2);
}

#[test]
fn mode1_and_mode5_start_on_a_gate_rising_edge() {
    let (clock, m) = model();
    m.outb(port::COMMAND, 0xB2); // counter 2, mode 1
    write_lohi(m, Channel::Ch2, 4);
    clock.advance_to(edge(10));
    assert!(m.out(Channel::Ch2), "waits for the trigger");
    m.outb(port::PORT_B, 1); // trigger at 10: load at 11, OUT low
    clock.advance_to(edge(11));
    assert!(!m.out(Channel::Ch2));
    clock.advance_to(edge(14));
    m.outb(port::PORT_B, 0);
    m.outb(port::PORT_B, 1); // retrigger at 14: load at 15
    clock.advance_to(edge(18));
    assert!(!m.out(Channel::Ch2));
    clock.advance_to(edge(19));
    assert!(m.out(Channel::Ch2));

    m.outb(port::PORT_B, 0);
    m.outb(port::COMMAND, 0xBA); // counter 2, mode 5
    write_lohi(m, Channel::Ch2, 2);
    m.outb(port::PORT_B, 1); // trigger at 19: load at 20, strobe at 22
    clock.advance_to(edge(22));
    assert!(!m.out(Channel::Ch2));
    clock.advance_to(edge(23));
    assert!(m.out(Channel::Ch2));
}

#[test]
fn read_back_latches_status_then_count() {
    let (clock, m) = model();
    program(m, Channel::Ch2, 2);
    m.outb(port::PORT_B, 1);
    write_lohi(m, Channel::Ch2, 300);
    clock.advance_to(edge(101));
    m.outb(port::COMMAND, 0b1100_1000); // count and status of counter 2
    clock.advance_to(edge(150));
    let status = Status::from_bits_retain(m.inb(port::CHANNEL2));
    assert!(status.contains(Status::OUTPUT));
    assert!(!status.contains(Status::NULL_COUNT));
    assert_eq!(status.bits() & 0x3F, 0x34, "RW = LSB/MSB, mode 2, binary");
    assert_eq!(status.mode(), crate::regs::Mode::RateGenerator);
    let lo = m.inb(port::CHANNEL2);
    let hi = m.inb(port::CHANNEL2);
    assert_eq!(
        u16::from_le_bytes([lo, hi]),
        200,
        "count latched at edge 101"
    );
}

#[test]
fn bcd_counts_down_in_decimal_from_10000() {
    let (clock, m) = model();
    m.outb(port::COMMAND, 0x35); // ch0, LSB/MSB, mode 2, BCD
    write_lohi(m, Channel::Ch0, 0x0000); // 10000
    clock.advance_to(edge(2));
    assert_eq!(latch_lohi(m, Channel::Ch0), 0x9999);
    clock.advance_to(edge(1 + 10_000 - 1234));
    assert_eq!(latch_lohi(m, Channel::Ch0), 0x1234);
    clock.advance_to(edge(1 + 10_000));
    assert_eq!(latch_lohi(m, Channel::Ch0), 0x0000, "period 10000 clocks");
}

#[test]
fn pending_interrupt_coalesces_later_edges() {
    let (clock, m) = model();
    program(m, Channel::Ch0, 2);
    write_lohi(m, Channel::Ch0, 10);
    assert!(m.fire()); // the control word's edge
    clock.advance_to(edge(51)); // edges at 11, 21, 31, 41, 51
    assert_eq!(m.next_fire(), Some(edge(11)), "overdue: the first edge");
    assert!(m.fire());
    assert_eq!(m.coalesced(), 4);
    assert_eq!(m.next_fire(), Some(edge(61)));
}

#[test]
fn stopped_clock_freezes_every_counter() {
    let (clock, m) = model();
    program(m, Channel::Ch0, 2);
    write_lohi(m, Channel::Ch0, 100);
    assert!(m.fire());
    clock.advance_to(edge(31));
    m.set_clock_running(false);
    clock.advance_to(edge(10_000));
    assert_eq!(m.peek_count(Channel::Ch0), 70);
    assert_eq!(m.next_fire(), None);
    m.set_clock_running(true);
    // 69 more clocks to the reload, counted from the restart.
    let t = m.next_fire().unwrap();
    assert_eq!(t, edge(10_000 + 70));
}

#[test]
fn linux_shutdown_sequence_silences_a_bios_programmed_pit() {
    let clock = VirtualClock::new();
    let m = PitModel::after_bios(clock.clone());
    // 18.2 Hz: the first edge 65536 clocks after the BIOS's write.
    assert_eq!(m.next_fire(), Some(edge(65_537)));
    clock.advance_to(Ktime::from_millis(100));
    assert!(m.fire());
    crate::Pit::new(&m).stop_channel0();
    assert!(!m.out(Channel::Ch0));
    clock.advance_to(Ktime::from_secs(10));
    assert_eq!(m.next_fire(), None);
    assert_eq!(m.interrupts(), 1);
    // Port B's refresh bit toggles every 18 clocks.
    let k = Crystal::raw_edges(clock.now()) / 18 + 1;
    clock.advance_to(edge(18 * k));
    let a = m.inb(port::PORT_B) & 0x10;
    clock.advance_to(edge(18 * (k + 1)));
    assert_ne!(a, m.inb(port::PORT_B) & 0x10);
}

#[test]
fn deferred_mode_quirk_keeps_firing_until_a_count_is_written() {
    let clock = VirtualClock::new();
    let m = PitModel::new(clock.clone()).with_quirks(Quirks::MODE_WRITE_DEFERRED);
    program(&m, Channel::Ch0, 2);
    write_lohi(&m, Channel::Ch0, 1_000);
    clock.advance_to(Ktime::from_millis(10));
    // A lone mode-0 control word: the quirky PIT keeps its mode 2.
    program(&m, Channel::Ch0, 0);
    let n = m.interrupts();
    for _ in 0..10 {
        let t = m.next_fire().unwrap();
        clock.advance_to(t);
        assert!(m.fire());
    }
    assert_eq!(m.interrupts(), n + 10, "a masked IRQ that keeps firing");
    // Linux's sequence: the count makes mode 0 take effect; what is left is
    // one 65536-clock shot, then silence.
    let t0 = clock.now();
    crate::Pit::new(&m).stop_channel0();
    let e0 = Crystal::raw_edges(t0);
    assert_eq!(m.next_fire(), Some(edge(e0 + 1 + 65_536)));
    clock.advance_to(edge(e0 + 1 + 65_536));
    assert!(m.fire());
    clock.advance_to(Ktime::from_secs(10));
    assert_eq!(m.next_fire(), None);
}

#[test]
fn crystal_edges_are_exact() {
    assert_eq!(Crystal::raw_edges(Ktime::from_secs(1)), 1_193_182);
    assert_eq!(Crystal::raw_edges(Ktime::from_secs(10)), 11_931_820);
    // Edge 1193182 is at exactly 1 s; edge 1 at ⌈838.095…⌉ ns.
    assert_eq!(Crystal::raw_time(1_193_182), Ktime::from_secs(1));
    assert_eq!(Crystal::raw_time(1), Ktime::from_nanos(839));
    for j in [1u64, 2, 11_933, 65_537, 123_456_789] {
        let t = Crystal::raw_time(j);
        assert_eq!(Crystal::raw_edges(t), j);
        assert_eq!(
            Crystal::raw_edges(Ktime::from_nanos(t.as_nanos() - 1)),
            j - 1
        );
    }
}
