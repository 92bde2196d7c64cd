//! `strongbox-fault-proxy --listen HOST:PORT --upstream HOST:PORT`: the fault-injecting
//! proxy `scripts/test.sh` puts in front of its S3 server (see
//! `strongbox_test_support::proxy`).

use std::net::TcpListener;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let (Some(listen), Some(upstream)) = (value("--listen"), value("--upstream")) else {
        eprintln!("usage: strongbox-fault-proxy --listen HOST:PORT --upstream HOST:PORT");
        return ExitCode::from(2);
    };
    match TcpListener::bind(&listen) {
        Ok(listener) => {
            strongbox_test_support::proxy::serve(listener, upstream);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("strongbox-fault-proxy: cannot listen on {listen}: {e}");
            ExitCode::FAILURE
        }
    }
}
