/*
 * timerbench — Linux's timer subsystem measured from user space, inside QEMU.
 *
 * Runs as the only program of a busybox initramfs (bench/linux/setup builds it,
 * bench/linux/run boots it). Every result is one console line
 *
 *     BENCH <group> key=value key=value ...
 *
 * with values that contain spaces in double quotes. Groups, in order:
 *
 *   system       kernel release, uptime at start (≈ boot time), /proc/cmdline
 *   clock        current and available clocksource, per-CPU and broadcast clockevent
 *   timer_list   hres_active, nohz_mode, tick and event devices (/proc/timer_list)
 *   idle         LOC + IRQ0 interrupts over one nanosleep of TB_IDLE_SECONDS (10)
 *   lateness     TB_PERIODS (2000) absolute 1 ms clock_nanosleep wake-ups:
 *                lateness = clock_gettime after wake − target, min/p50/p99/max µs,
 *                timer slack 1 ns, then again with the default slack (50 µs)
 *   clock_read   median delta of consecutive clock_gettime(CLOCK_MONOTONIC) calls
 *                over TB_READS (10^6) calls, per available clocksource
 *   clock, timer_list again at the end
 *   dmesg        the kernel's TSC / APIC / clocksource calibration from /dev/kmsg
 *   done
 *
 * With TB_TIMELINE=<seconds> set, only system and clock (start) are reported,
 * then the timeline of one idle nanosleep of that many seconds (bench_timeline
 * below: one `timeline` line per timer interrupt, from tracefs, and a
 * `timeline_window` line), then done.
 *
 * The method is the one of the project's anchors file linux-guest.md
 * (../shared/anchors/, beside the repository). The TB_* names are environment
 * variables; the kernel hands unknown "NAME=value" parameters to
 * init as environment, so `bench/linux/run --append TB_IDLE_SECONDS=5` works.
 *
 * Powering off is left to /init, which runs this program as a child.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#define NS_PER_S 1000000000LL
#define NS_PER_MS 1000000LL

static const char CLOCKSOURCE_DIR[] = "/sys/devices/system/clocksource/clocksource0";

/* --- small helpers ------------------------------------------------------- */

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

static struct timespec ns_to_timespec(int64_t ns)
{
    struct timespec ts = { .tv_sec = ns / NS_PER_S, .tv_nsec = ns % NS_PER_S };
    return ts;
}

static long env_long(const char *name, long dflt, long min, long max)
{
    const char *s = getenv(name);
    if (!s || !*s)
        return dflt;
    char *end;
    long v = strtol(s, &end, 10);
    if (*end || v < min || v > max) {
        printf("BENCH warning bad_env=%s value=\"%s\" using=%ld\n", name, s, dflt);
        return dflt;
    }
    return v;
}

/* Reads a whole small file; strips the trailing newline. Returns 0 on success. */
static int read_text(const char *path, char *buf, size_t len)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, len - 1, f);
    fclose(f);
    buf[n] = '\0';
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
        buf[--n] = '\0';
    return 0;
}

static int write_text(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY);
    if (fd < 0)
        return -1;
    ssize_t n = write(fd, text, strlen(text));
    close(fd);
    return n == (ssize_t)strlen(text) ? 0 : -1;
}

/* Prints s as a double-quoted value: '"' and '\' escaped, control bytes dropped. */
static void print_quoted(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            putchar('\\');
        if ((unsigned char)*s >= 0x20)
            putchar(*s);
    }
    putchar('"');
}

static void print_file_value(const char *key, const char *path)
{
    char buf[512];
    printf(" %s=", key);
    if (read_text(path, buf, sizeof buf) == 0)
        print_quoted(buf);
    else
        printf("none");
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of a sorted array: the smallest value with at least
 * pct % of the samples at or below it. */
static int64_t percentile(const int64_t *sorted, size_t n, unsigned pct)
{
    size_t rank = (n * pct + 99) / 100;
    return sorted[rank ? rank - 1 : 0];
}

/* --- system and configuration ------------------------------------------- */

static void report_system(void)
{
    struct utsname u;
    char up[64] = "?";
    uname(&u);
    read_text("/proc/uptime", up, sizeof up);
    char *space = strchr(up, ' ');
    if (space)
        *space = '\0';
    printf("BENCH system kernel=%s machine=%s uptime_s=%s\n", u.release, u.machine, up);
    printf("BENCH system");
    print_file_value("cmdline", "/proc/cmdline");
    putchar('\n');
}

static void report_clock_config(const char *when)
{
    char path[256];
    printf("BENCH clock when=%s", when);
    snprintf(path, sizeof path, "%s/current_clocksource", CLOCKSOURCE_DIR);
    print_file_value("clocksource", path);
    snprintf(path, sizeof path, "%s/available_clocksource", CLOCKSOURCE_DIR);
    print_file_value("available", path);
    print_file_value("clockevent", "/sys/devices/system/clockevents/clockevent0/current_device");
    print_file_value("broadcast", "/sys/devices/system/clockevents/broadcast/current_device");
    putchar('\n');
}

/* The per-CPU tick state from /proc/timer_list (CONFIG_TIMER_LIST): whether
 * high resolution is active, the NO_HZ mode (0 inactive, 1 low-res, 2 high-res)
 * and the mode of each tick device. */
static void report_timer_list(const char *when)
{
    FILE *f = fopen("/proc/timer_list", "r");
    if (!f) {
        printf("BENCH timer_list when=%s available=no\n", when);
        return;
    }
    static const char *const keys[] = { "hres_active", "nohz_mode", "tick_stopped",
                                        "idle_calls", "idle_sleeps", "nr_events" };
    char line[512], mode[32] = "?", prefix[32] = "";
    unsigned long long mult = 0, shift;
    printf("BENCH timer_list when=%s", when);
    while (fgets(line, sizeof line, f)) {
        char *p = line;
        int cpu;
        while (*p == ' ')
            p++;
        p[strcspn(p, "\n")] = '\0';
        /* "Tick Device: mode: M" is followed by "Broadcast device" or
         * "Per CPU device: N", then by "Clock Event Device: NAME". */
        if (sscanf(p, "Tick Device: mode: %31s", mode) == 1) {
            continue;
        } else if (strcmp(p, "Broadcast device") == 0) {
            snprintf(prefix, sizeof prefix, "broadcast_");
            printf(" broadcast_tick_mode=%s", mode);
        } else if (sscanf(p, "Per CPU device: %d", &cpu) == 1) {
            snprintf(prefix, sizeof prefix, "cpu%d_", cpu);
            printf(" %stick_mode=%s", prefix, mode);
        } else if (strncmp(p, "Clock Event Device:", 19) == 0) {
            char name[64];
            if (sscanf(p + 19, "%63s", name) == 1)
                printf(" %sevent_device=%s", prefix, name);
        } else if (sscanf(p, "min_delta_ns: %llu", &shift) == 1) {
            printf(" %smin_delta_ns=%llu", prefix, shift);
        } else if (sscanf(p, "max_delta_ns: %llu", &shift) == 1) {
            printf(" %smax_delta_ns=%llu", prefix, shift);
        } else if (sscanf(p, "mult: %llu", &mult) == 1) {
            continue;
        } else if (sscanf(p, "shift: %llu", &shift) == 1 && shift < 64) {
            /* A clockevent converts ns to cycles as (ns * mult) >> shift. */
            printf(" %sfreq_hz=%.0f", prefix, (double)mult * 1e9 / (double)(1ULL << shift));
        } else if (strncmp(p, "event_handler:", 14) == 0) {
            char name[64];
            if (sscanf(p + 14, "%63s", name) == 1)
                printf(" %sevent_handler=%s", prefix, name);
        } else if (p[0] == '.') {
            for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
                size_t k = strlen(keys[i]);
                if (strncmp(p + 1, keys[i], k) == 0 && (p[1 + k] == ' ' || p[1 + k] == ':')) {
                    char *colon = strchr(p, ':');
                    long long v;
                    if (colon && sscanf(colon + 1, "%lld", &v) == 1)
                        printf(" %s=%lld", keys[i], v);
                }
            }
        }
    }
    fclose(f);
    putchar('\n');
}

/* --- idle timer interrupts ---------------------------------------------- */

struct irq_counts {
    long long loc;   /* local APIC timer interrupts, all CPUs */
    long long irq0;  /* IO-APIC / PIC line 0: PIT or HPET in legacy mode */
    long long total; /* every numbered and named line, for context */
};

/* Sums the per-CPU columns of the line that starts with `label:`. */
static long long sum_counts(const char *rest)
{
    long long sum = 0;
    const char *p = rest;
    for (;;) {
        while (*p == ' ' || *p == '\t')
            p++;
        if (!isdigit((unsigned char)*p))
            break;
        char *end;
        sum += strtoll(p, &end, 10);
        p = end;
    }
    return sum;
}

static int read_irq_counts(struct irq_counts *c)
{
    FILE *f = fopen("/proc/interrupts", "r");
    if (!f)
        return -1;
    char line[1024];
    memset(c, 0, sizeof *c);
    if (!fgets(line, sizeof line, f)) { /* header: CPU0 CPU1 ... */
        fclose(f);
        return -1;
    }
    while (fgets(line, sizeof line, f)) {
        char *p = line;
        while (*p == ' ')
            p++;
        char *colon = strchr(p, ':');
        if (!colon)
            continue;
        *colon = '\0';
        long long n = sum_counts(colon + 1);
        if (strcmp(p, "ERR") == 0 || strcmp(p, "MIS") == 0)
            continue; /* error counters, not interrupts */
        c->total += n;
        if (strcmp(p, "LOC") == 0)
            c->loc = n;
        else if (strcmp(p, "0") == 0)
            c->irq0 = n;
    }
    fclose(f);
    return 0;
}

static void bench_idle(long seconds)
{
    struct irq_counts before, after;
    if (read_irq_counts(&before) != 0) {
        printf("BENCH idle error=\"cannot read /proc/interrupts\"\n");
        return;
    }
    int64_t t0 = mono_ns();
    struct timespec req = ns_to_timespec(seconds * NS_PER_S), rem;
    while (nanosleep(&req, &rem) != 0 && errno == EINTR)
        req = rem;
    int64_t t1 = mono_ns();
    read_irq_counts(&after);

    double secs = (double)(t1 - t0) / NS_PER_S;
    long long loc = after.loc - before.loc, irq0 = after.irq0 - before.irq0;
    printf("BENCH idle seconds=%.3f loc=%lld irq0=%lld timer_irqs=%lld per_s=%.1f "
           "all_irqs=%lld all_per_s=%.1f\n",
           secs, loc, irq0, loc + irq0, (loc + irq0) / secs, after.total - before.total,
           (after.total - before.total) / secs);
}

/* --- idle timeline from tracefs ---------------------------------------- */

/*
 * Every timer interrupt of one idle nanosleep, with its time, for the SVG
 * timeline of `cargo xtask bench` (xtask/src/timeline.rs). The events are the
 * kernel's tracepoints, read from tracefs (Documentation/trace/events.rst,
 * Documentation/trace/ftrace.rst):
 *
 *   irq_vectors:local_timer_entry   a local APIC timer interrupt (LOC)
 *   irq:irq_handler_entry, irq == 0 an IRQ0 interrupt (PIT or HPET legacy)
 *   timer:hrtimer_expire_entry      an hrtimer's callback: tick_sched_timer
 *                                   (the tick), hrtimer_wakeup (the sleep
 *                                   that ends the window), others
 *   timer:timer_expire_entry        a timer-wheel callback (its softirq runs
 *                                   on the interrupt's exit), among them
 *                                   clocksource_watchdog
 *
 * with trace_clock "mono" (CLOCK_MONOTONIC, so comparable with the window's
 * start read here; printed to the µs). The callbacks traced after an
 * interrupt and before the next one are taken as that interrupt's. Its kind:
 * `timer` if a callback other than the tick's and the clocksource watchdog's
 * ran (the ending sleep, or a kernel timer the tick was woken for; a watchdog
 * check beside it shows in fn= only), else `watchdog` for the clocksource
 * watchdog, else `tick` for tick_sched_timer alone, else `other`. The
 * interrupt that ran the sleep's hrtimer_wakeup has end=1.
 *
 * The output has the shape of the dynticks guest's bench-timeline:
 *
 *   BENCH timeline cpu=0 dev=LOC at_us=3900.0 kind=tick fn="tick_sched_timer"
 *   BENCH timeline_window source=tracefs events=N start_ns=… end_us=… timer_us=… …
 *
 * Without tracefs (or if an event is missing) there are no times: the
 * window's line then says so (skipped=…) and gives the counts of
 * /proc/interrupts only.
 */

#define TL_MAX 4096 /* interrupts kept; more are counted in dropped= */
#define TL_FNS 96   /* bytes of callback names kept per interrupt */

struct tl_irq {
    int64_t ts;        /* ns, CLOCK_MONOTONIC */
    int cpu;
    int irq0;          /* 0: LOC, 1: IRQ0 */
    int wakeup;        /* hrtimer_wakeup ran */
    int watchdog;      /* clocksource_watchdog ran */
    int tick;          /* tick_sched_timer ran */
    int others;        /* any other callback ran */
    char fns[TL_FNS];  /* the callbacks, comma-separated (cut if long) */
};

static struct tl_irq tl_irqs[TL_MAX];
static const char *tracefs = "/sys/kernel/tracing";

static int tracefs_write(const char *file, const char *text)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", tracefs, file);
    return write_text(path, text);
}

/* Mounts tracefs if it is not there yet; 0 when its files are usable. */
static int tracefs_mount(char *why, size_t len)
{
    char path[64];
    snprintf(path, sizeof path, "%s/trace", tracefs);
    if (access(path, R_OK) == 0)
        return 0;
    if (mount("nodev", tracefs, "tracefs", 0, NULL) != 0 && errno != EBUSY) {
        snprintf(why, len, "cannot mount tracefs on %s: %s", tracefs, strerror(errno));
        return -1;
    }
    if (access(path, R_OK) != 0) {
        snprintf(why, len, "no %s after mounting tracefs: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* "sec.frac" (as the trace prints its time stamps) to ns; -1 if it is not one. */
static int64_t parse_stamp(const char *s, size_t n)
{
    int64_t sec = 0, frac = 0, scale = NS_PER_S;
    size_t i = 0;
    if (n == 0 || !isdigit((unsigned char)s[0]))
        return -1;
    while (i < n && isdigit((unsigned char)s[i]))
        sec = sec * 10 + (s[i++] - '0');
    if (i == n || s[i++] != '.')
        return -1;
    for (; i < n && isdigit((unsigned char)s[i]); i++)
        if (scale > 1) {
            scale /= 10;
            frac += (s[i] - '0') * scale;
        }
    return i == n ? sec * NS_PER_S + frac : -1;
}

/* The value of `key=` in an event's fields, copied to buf (up to a space). */
static int trace_field(const char *fields, const char *key, char *buf, size_t len)
{
    size_t k = strlen(key);
    for (const char *p = fields; (p = strstr(p, key)); p += k) {
        if ((p == fields || p[-1] == ' ') && p[k] == '=') {
            p += k + 1;
            size_t n = strcspn(p, " \n");
            if (n >= len)
                n = len - 1;
            memcpy(buf, p, n);
            buf[n] = '\0';
            return 0;
        }
    }
    return -1;
}

/*
 * Splits one line of the trace file, "  <task>-<pid>  [000] d.h1.  12.345678:
 * event: fields", into CPU, time stamp, event name and fields; -1 for a
 * comment or anything else.
 */
static int parse_trace_line(char *line, int *cpu, int64_t *ts, char **event, char **fields)
{
    if (line[0] == '#')
        return -1;
    char *p = strchr(line, '[');
    if (!p || sscanf(p, "[%d]", cpu) != 1 || !(p = strchr(p, ']')))
        return -1;
    p++;
    /* The first "digits.digits:" word is the time stamp (the flags may or
     * may not come before it). */
    for (;;) {
        while (*p == ' ')
            p++;
        if (!*p)
            return -1;
        size_t n = strcspn(p, " ");
        if (n > 1 && p[n - 1] == ':' && (*ts = parse_stamp(p, n - 1)) >= 0) {
            p += n;
            break;
        }
        p += n;
    }
    while (*p == ' ')
        p++;
    char *colon = strchr(p, ':');
    if (!colon)
        return -1;
    *colon = '\0';
    *event = p;
    *fields = colon + 1;
    (*fields)[strcspn(*fields, "\n")] = '\0';
    return 0;
}

static void tl_add_fn(struct tl_irq *q, const char *fn)
{
    size_t used = strlen(q->fns);
    if (strstr(q->fns, fn))
        return; /* each name once */
    if (used + strlen(fn) + 2 > sizeof q->fns)
        return;
    snprintf(q->fns + used, sizeof q->fns - used, "%s%s", used ? "," : "", fn);
}

static const char *tl_kind(const struct tl_irq *q)
{
    if (q->wakeup || q->others)
        return "timer";
    if (q->watchdog)
        return "watchdog";
    if (q->tick)
        return "tick";
    return "other";
}

static void bench_timeline(long seconds)
{
    char why[256] = "";
    struct irq_counts before, after;
    static const char *const events[] = {
        "events/irq_vectors/local_timer_entry/enable",
        "events/irq/irq_handler_entry/enable",
        "events/timer/hrtimer_expire_entry/enable",
        "events/timer/timer_expire_entry/enable",
    };
    int traced = tracefs_mount(why, sizeof why) == 0;
    if (traced && (tracefs_write("tracing_on", "0") != 0 ||
                   tracefs_write("trace_clock", "mono") != 0 ||
                   tracefs_write("buffer_size_kb", "4096") != 0 ||
                   tracefs_write("events/irq/irq_handler_entry/filter", "irq == 0") != 0)) {
        snprintf(why, sizeof why, "tracefs: cannot set up tracing (trace_clock mono, filter)");
        traced = 0;
    }
    for (size_t i = 0; traced && i < sizeof events / sizeof events[0]; i++) {
        if (tracefs_write(events[i], "1") != 0) {
            snprintf(why, sizeof why, "tracefs: cannot enable %s", events[i]);
            traced = 0;
        }
    }
    if (traced) {
        char path[256];
        snprintf(path, sizeof path, "%s/trace", tracefs);
        int fd = open(path, O_WRONLY | O_TRUNC); /* clears the buffer */
        if (fd >= 0)
            close(fd);
        traced = fd >= 0 && tracefs_write("tracing_on", "1") == 0;
        if (!traced)
            snprintf(why, sizeof why, "tracefs: cannot clear the buffer or start tracing");
    }

    read_irq_counts(&before);
    int64_t t0 = mono_ns();
    struct timespec req = ns_to_timespec(seconds * NS_PER_S), rem;
    while (nanosleep(&req, &rem) != 0 && errno == EINTR)
        req = rem;
    int64_t t1 = mono_ns();
    if (traced)
        tracefs_write("tracing_on", "0");
    read_irq_counts(&after);
    long long loc = after.loc - before.loc, irq0 = after.irq0 - before.irq0;

    if (!traced) {
        printf("BENCH timeline_window source=proc_interrupts start_ns=%lld end_us=%.1f "
               "timer_us=%.1f loc=%lld irq0=%lld skipped=",
               (long long)t0, (t1 - t0) / 1e3, seconds * 1e6, loc, irq0);
        print_quoted(why);
        putchar('\n');
        return;
    }

    char path[256], line[1024];
    snprintf(path, sizeof path, "%s/trace", tracefs);
    FILE *f = fopen(path, "r");
    if (!f) {
        printf("BENCH timeline_window source=tracefs skipped=\"cannot read %s\"\n", path);
        return;
    }
    size_t n = 0;
    long dropped = 0, lost = 0;
    struct tl_irq *cur = NULL; /* the interrupt the callbacks belong to */
    int64_t ran = -1;
    while (fgets(line, sizeof line, f)) {
        int cpu;
        int64_t ts;
        char *event, *fields, buf[96];
        if (strstr(line, "LOST") && strstr(line, "EVENTS")) {
            lost++; /* "CPU:0 [LOST 12 EVENTS]": the buffer overflowed */
            continue;
        }
        if (parse_trace_line(line, &cpu, &ts, &event, &fields) != 0)
            continue;
        int is_loc = strcmp(event, "local_timer_entry") == 0;
        int is_irq0 = strcmp(event, "irq_handler_entry") == 0 &&
                      trace_field(fields, "irq", buf, sizeof buf) == 0 && strcmp(buf, "0") == 0;
        if (is_loc || is_irq0) {
            cur = NULL;
            if (ts < t0 || ts > t1)
                continue; /* outside the window */
            if (n == TL_MAX) {
                dropped++;
                continue;
            }
            cur = &tl_irqs[n++];
            memset(cur, 0, sizeof *cur);
            cur->ts = ts;
            cur->cpu = cpu;
            cur->irq0 = is_irq0;
            continue;
        }
        int hr = strcmp(event, "hrtimer_expire_entry") == 0;
        if (!cur || !(hr || strcmp(event, "timer_expire_entry") == 0) ||
            trace_field(fields, "function", buf, sizeof buf) != 0)
            continue;
        tl_add_fn(cur, buf);
        if (hr && strcmp(buf, "hrtimer_wakeup") == 0) {
            cur->wakeup = 1;
            ran = ts;
        } else if (hr && strcmp(buf, "tick_sched_timer") == 0) {
            cur->tick = 1;
        } else if (!hr && strcmp(buf, "clocksource_watchdog") == 0) {
            cur->watchdog = 1;
        } else {
            cur->others = 1;
        }
    }
    fclose(f);

    /* The sleep's wake-up is the last hrtimer_wakeup: nothing else sleeps. */
    size_t end = n;
    for (size_t i = n; i-- > 0;)
        if (tl_irqs[i].wakeup) {
            end = i;
            break;
        }
    long kinds[4] = { 0 };
    static const char *const kind_names[4] = { "tick", "timer", "watchdog", "other" };
    for (size_t i = 0; i < n; i++) {
        const struct tl_irq *q = &tl_irqs[i];
        const char *kind = tl_kind(q);
        for (int k = 0; k < 4; k++)
            kinds[k] += strcmp(kind, kind_names[k]) == 0;
        printf("BENCH timeline cpu=%d dev=%s at_us=%.1f kind=%s", q->cpu,
               q->irq0 ? "IRQ0" : "LOC", (q->ts - t0) / 1e3, kind);
        if (i == end)
            printf(" end=1");
        printf(" fn=");
        print_quoted(q->fns);
        putchar('\n');
    }
    printf("BENCH timeline_window source=tracefs clock=mono events=%zu start_ns=%lld "
           "end_us=%.1f timer_us=%.1f",
           n, (long long)t0, (t1 - t0) / 1e3, seconds * 1e6);
    if (ran >= 0)
        printf(" ran_us=%.1f", (ran - t0) / 1e3);
    else
        printf(" ran_us=none");
    for (int k = 0; k < 4; k++)
        printf(" %s=%ld", kind_names[k], kinds[k]);
    printf(" dropped=%ld lost_buffers=%ld loc=%lld irq0=%lld\n", dropped, lost, loc, irq0);
}

/* --- periodic wake-up lateness ------------------------------------------ */

static void bench_lateness(long periods, unsigned long slack_ns, const char *slack_label)
{
    if (prctl(PR_SET_TIMERSLACK, slack_ns, 0, 0, 0) != 0) {
        printf("BENCH lateness error=\"prctl(PR_SET_TIMERSLACK) failed: %s\"\n",
               strerror(errno));
        return;
    }
    long effective = prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0);
    int64_t *late = malloc(periods * sizeof *late);
    if (!late)
        return;

    int64_t next = mono_ns();
    for (long i = 0; i < periods; i++) {
        next += NS_PER_MS;
        struct timespec target = ns_to_timespec(next);
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &target, NULL) == EINTR)
            ;
        late[i] = mono_ns() - next;
    }

    long early = 0, missed = 0;
    for (long i = 0; i < periods; i++) {
        early += late[i] < 0;
        missed += late[i] >= NS_PER_MS; /* woke after the next period was due */
    }
    qsort(late, periods, sizeof *late, cmp_i64);
    printf("BENCH lateness slack=%s slack_ns=%ld periods=%ld period_us=1000 "
           "min_us=%.1f p50_us=%.1f p99_us=%.1f max_us=%.1f early=%ld missed_periods=%ld\n",
           slack_label, effective, periods, late[0] / 1e3,
           percentile(late, periods, 50) / 1e3, percentile(late, periods, 99) / 1e3,
           late[periods - 1] / 1e3, early, missed);
    free(late);
}

/* --- clock read cost ---------------------------------------------------- */

#define HIST_NS 100000 /* deltas of 100 µs and more share the last bucket */

static void bench_clock_read(const char *source, long reads)
{
    static uint32_t hist[HIST_NS + 1];
    memset(hist, 0, sizeof hist);
    struct timespec ts;
    int64_t min = INT64_MAX;

    int64_t first = mono_ns(), prev = first;
    for (long i = 0; i < reads; i++) {
        clock_gettime(CLOCK_MONOTONIC, &ts);
        int64_t now = (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
        int64_t d = now - prev;
        prev = now;
        if (d < min)
            min = d;
        hist[d < 0 ? 0 : d > HIST_NS ? HIST_NS : d]++;
    }

    long half = reads / 2, seen = 0, median = -1;
    for (long ns = 0; ns <= HIST_NS; ns++) {
        seen += hist[ns];
        if (seen > half) {
            median = ns;
            break;
        }
    }
    printf("BENCH clock_read source=%s calls=%ld median_ns=%ld%s mean_ns=%.1f min_ns=%lld\n",
           source, reads, median, median == HIST_NS ? "+" : "",
           (double)(prev - first) / reads, (long long)min);
}

static void bench_clock_reads(long reads)
{
    char cur_path[256], avail_path[256], original[64], avail[256];
    snprintf(cur_path, sizeof cur_path, "%s/current_clocksource", CLOCKSOURCE_DIR);
    snprintf(avail_path, sizeof avail_path, "%s/available_clocksource", CLOCKSOURCE_DIR);
    if (read_text(cur_path, original, sizeof original) != 0 ||
        read_text(avail_path, avail, sizeof avail) != 0) {
        printf("BENCH clock_read error=\"no clocksource sysfs\"\n");
        bench_clock_read("unknown", reads);
        return;
    }

    /* The current source first, then every other available one; then back. */
    char order[16][64];
    int n = 0;
    snprintf(order[n++], sizeof order[0], "%s", original);
    for (char *tok = strtok(avail, " "); tok && n < 16; tok = strtok(NULL, " "))
        if (strcmp(tok, original) != 0)
            snprintf(order[n++], sizeof order[0], "%s", tok);

    for (int i = 0; i < n; i++) {
        char now[64];
        if (write_text(cur_path, order[i]) != 0 || read_text(cur_path, now, sizeof now) != 0 ||
            strcmp(now, order[i]) != 0) {
            printf("BENCH clock_read source=%s error=\"could not switch\"\n", order[i]);
            continue;
        }
        bench_clock_read(order[i], reads);
    }
    if (write_text(cur_path, original) != 0)
        printf("BENCH clock_read error=\"could not restore %s\"\n", original);
}

/* --- kernel calibration from /dev/kmsg ---------------------------------- */

/* Prints the figures of a known calibration message; returns 0 if msg is not one. */
static int report_kmsg_figures(double t, const char *msg)
{
    double mhz;
    char name[64];
    unsigned long long mask, max_cycles, max_idle;
    unsigned long result;

    if (sscanf(msg, "tsc: Detected %lf MHz", &mhz) == 1)
        printf("BENCH dmesg t=%.3f tsc_detected_mhz=%.3f\n", t, mhz);
    else if (sscanf(msg, "tsc: Refined TSC clocksource calibration: %lf MHz", &mhz) == 1)
        printf("BENCH dmesg t=%.3f tsc_refined_mhz=%.3f\n", t, mhz);
    else if (sscanf(msg, "clocksource: %63[^:]: mask: %llx max_cycles: %llx, max_idle_ns: %llu",
                    name, &mask, &max_cycles, &max_idle) == 4)
        printf("BENCH dmesg t=%.3f clocksource=%s mask=0x%llx max_cycles=0x%llx "
               "max_idle_ns=%llu\n", t, name, mask, max_cycles, max_idle);
    else if (sscanf(msg, "clocksource: Switched to clocksource %63s", name) == 1)
        printf("BENCH dmesg t=%.3f switched_to_clocksource=%s\n", t, name);
    /* The local APIC timer calibration is printed with apic=verbose only. */
    else if (sscanf(msg, "..... calibration result: %lu", &result) == 1)
        printf("BENCH dmesg t=%.3f lapic_calibration_result=%lu\n", t, result);
    else if (sscanf(msg, "..... host bus clock speed is %lf MHz", &mhz) == 1)
        printf("BENCH dmesg t=%.3f lapic_bus_mhz=%.4f\n", t, mhz);
    else
        return 0;
    return 1;
}

/* One kmsg record's message: its figures if it is known, else, if it is about
 * the time hardware, its text. */
static void report_kmsg_line(double t, const char *msg)
{
    if (report_kmsg_figures(t, msg))
        return;
    /* Anything else about the time hardware, verbatim. */
    static const char *const topics[] = {
        "tsc", "TSC", "APIC timer", "lapic", "TSC deadline", "hpet", "HPET",
        "clocksource", "clockevent", "hrtimer", "NOHZ", "NO_HZ", "nohz", "BogoMIPS",
        "sched_clock", "timer", "PIT", "acpi_pm", "calibration", "clock speed",
    };
    for (size_t i = 0; i < sizeof topics / sizeof topics[0]; i++) {
        if (strstr(msg, topics[i])) {
            printf("BENCH dmesg t=%.3f text=", t);
            print_quoted(msg);
            putchar('\n');
            return;
        }
    }
}

static void report_kmsg(void)
{
    int fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK);
    if (fd < 0) {
        printf("BENCH dmesg available=no error=\"%s\"\n", strerror(errno));
        return;
    }
    char rec[8192];
    for (;;) {
        ssize_t n = read(fd, rec, sizeof rec - 1);
        if (n < 0) {
            if (errno == EPIPE) /* overwritten while we read: skip ahead */
                continue;
            break; /* EAGAIN: no more records */
        }
        rec[n] = '\0';
        /* "prio,seq,usec,flags;message\n key=value..." */
        unsigned long long usec = 0;
        sscanf(rec, "%*u,%*u,%llu", &usec);
        char *msg = strchr(rec, ';');
        if (!msg)
            continue;
        msg++;
        msg[strcspn(msg, "\n")] = '\0';
        report_kmsg_line(usec / 1e6, msg);
    }
    close(fd);
}

/* ------------------------------------------------------------------------ */

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    long idle_s = env_long("TB_IDLE_SECONDS", 10, 1, 3600);
    long periods = env_long("TB_PERIODS", 2000, 100, 1000000);
    long reads = env_long("TB_READS", 1000000, 1000, 100000000);
    long timeline_s = env_long("TB_TIMELINE", 0, 0, 60);

    report_system();
    report_clock_config("start");
    if (timeline_s > 0) {
        bench_timeline(timeline_s);
    } else {
        report_timer_list("start");

        bench_idle(idle_s);
        bench_lateness(periods, 1, "1ns");
        bench_lateness(periods, 50000, "default"); /* 50 µs, the kernel default */
        bench_clock_reads(reads);

        /* Last, so that late messages (TSC refinement, watchdog verdicts) are in. */
        report_clock_config("end");
        report_timer_list("end");
        report_kmsg();
    }
    printf("BENCH done uptime_s=");
    char up[64] = "?";
    read_text("/proc/uptime", up, sizeof up);
    up[strcspn(up, " ")] = '\0';
    printf("%s\n", up);
    return 0;
}
