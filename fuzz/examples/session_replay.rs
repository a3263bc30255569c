//! Plays `session` target inputs outside libFuzzer and prints what each reached and how
//! long it took: `cargo run --release --example session_replay -- FILE...`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for path in std::env::args().skip(1) {
        let data = std::fs::read(&path)?;
        let t = std::time::Instant::now();
        let outcome = tds_fuzz::protocol::run(&data);
        println!("{path}: {:?} in {:?}", outcome, t.elapsed());
    }
    Ok(())
}
