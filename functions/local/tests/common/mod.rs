//! What the local binary's test files share: the workspace root, and `imagehook serve` started
//! on a free port and stopped when the test ends.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The workspace root: the sample events' paths are relative to it.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The local binary on a state directory, from the workspace root, with none of the caller's
/// store, deploy or auth settings: each test sets its own.
#[allow(
    dead_code,
    reason = "the test against moto runs the binary on DynamoDB instead"
)]
pub fn local(state: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_imagehook"));
    c.current_dir(root())
        .arg("--state-dir")
        .arg(state)
        .env_remove("TABLE_NAME")
        .env_remove("DEPLOY_MODE")
        .env_remove("AUTH_MODE")
        .env_remove("WEBHOOK_SECRETS")
        .env_remove("DEPLOY_RULES_FILE");
    c
}

/// A running `imagehook serve`, killed when dropped.
pub struct Server(pub Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Runs `serve` from `imagehook` (the binary with its state dir and environment) on a free port,
/// once it accepts connections.
pub fn serve(mut imagehook: Command) -> (Server, u16) {
    let port = free_port();
    let child = imagehook
        .args(["serve", "--addr", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("imagehook serve starts");
    let server = Server(child);
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "serve did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (server, port)
}
