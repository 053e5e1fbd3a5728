//! `fuzz [--target T] [--iterations N] [--seed S]`: runs the fuzz targets
//! (all, in order, or T) for N inputs each from seed S, prints what each
//! did, and on a failure the input, its seed and the command that runs it
//! alone. Exits 1 if a target failed, 2 on bad arguments. `cargo xtask
//! fuzz` builds and runs it in release.

use std::process::ExitCode;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

const USAGE: &str = "usage: fuzz [--target T] [--iterations N] [--seed S]";

/// The inputs per target when `--iterations` is not given.
const DEFAULT_ITERATIONS: u64 = 1_000_000;

fn main() -> ExitCode {
    let mut target = None;
    let mut iterations = DEFAULT_ITERATIONS;
    let mut seed = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let Some(value) = inline
            .or_else(|| args.next())
            .filter(|_| flag != "-h" && flag != "--help")
        else {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        };
        let number = |v: &str| {
            let v = v.replace('_', "");
            match v.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16).ok(),
                None => v.parse::<u64>().ok(),
            }
        };
        match flag.as_str() {
            "--target" => target = Some(value),
            "--iterations" => match number(&value) {
                Some(n) => iterations = n,
                None => return bad(&format!("--iterations {value}: expected a count")),
            },
            "--seed" => match number(&value) {
                Some(s) => seed = Some(s),
                None => return bad(&format!("--seed {value}: expected a number")),
            },
            _ => return bad(&format!("unknown argument {arg}")),
        }
    }
    let seed = seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let targets: Vec<&str> = match &target {
        Some(t) if fuzz::TARGETS.contains(&t.as_str()) => vec![t.as_str()],
        Some(t) => {
            return bad(&format!(
                "no target {t}: expected one of {}",
                fuzz::TARGETS.join(", ")
            ))
        }
        None => fuzz::TARGETS.to_vec(),
    };
    println!("fuzz: seed {seed}, {iterations} inputs per target");
    let mut failed = false;
    for t in targets {
        let start = Instant::now();
        let r = fuzz::run_named(t, seed, iterations).expect("a listed target");
        let secs = start.elapsed().as_secs_f64();
        println!(
            "fuzz: target={} inputs={} distinct_outcomes={} seconds={secs:.1} verdict={}",
            r.target,
            r.inputs,
            r.distinct,
            if r.failure.is_some() { "FAIL" } else { "pass" }
        );
        if let Some(f) = &r.failure {
            failed = true;
            println!("  panic: {}", f.message);
            println!("  input seed: {}", f.seed);
            println!("  input: {}", f.input);
            println!("  reproduce: {}", r.reproduce().unwrap_or_default());
        }
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn bad(msg: &str) -> ExitCode {
    eprintln!("fuzz: {msg}\n{USAGE}");
    ExitCode::from(2)
}
