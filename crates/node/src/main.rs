//! `tds`, the TDS reference node. The work happens in [`tds_node::run`]; this only turns
//! its result into an exit status and one line on stderr.

use std::process::ExitCode;

fn main() -> ExitCode {
    match tds_node::run(std::env::args_os()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if tds_node::is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            tds_node::report(&err);
            ExitCode::from(tds_node::exit_status(&err))
        }
    }
}
