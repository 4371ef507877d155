//! The SSH target against the real sshd and Docker engine of scripts/services.

use std::time::Duration;

use oec_tests::TargetEnv;
use oec_worker::target::ConnectErrorCode;
use oec_worker::target::ssh::{Credentials, SshParams, SshTarget};

fn params(t: &TargetEnv, credentials: Credentials) -> SshParams {
    SshParams {
        host: t.host.clone(),
        port: t.port,
        user: t.user.clone(),
        credentials,
        connect_timeout: Duration::from_secs(10),
        host_key_fingerprint: None,
    }
}

/// The fingerprint of this machine's test sshd, as `ssh-keygen -l` prints it.
fn host_fingerprint() -> String {
    let out = std::process::Command::new("ssh-keyscan")
        .args([
            "-p",
            &TargetEnv::load().port.to_string(),
            "-t",
            "ed25519",
            "127.0.0.1",
        ])
        .output()
        .expect("ssh-keyscan");
    let mut keygen = std::process::Command::new("ssh-keygen")
        .args(["-l", "-E", "sha256", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("ssh-keygen");
    use std::io::Write as _;
    keygen
        .stdin
        .take()
        .expect("stdin")
        .write_all(&out.stdout)
        .expect("write");
    let out = keygen.wait_with_output().expect("ssh-keygen output");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .expect("fingerprint")
        .to_owned()
}

#[tokio::test]
async fn a_stored_host_key_fingerprint_is_checked() {
    let t = TargetEnv::load();
    let mut p = params(&t, Credentials::Key(t.private_key()));
    p.host_key_fingerprint = Some(host_fingerprint());
    let target = SshTarget::connect(p)
        .await
        .expect("the right fingerprint connects");
    assert!(
        target
            .run("true", &mut |_| {})
            .await
            .expect("run")
            .success()
    );
    let mut p = params(&t, Credentials::Key(t.private_key()));
    p.host_key_fingerprint = Some("SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s".into());
    let err = SshTarget::connect(p)
        .await
        .err()
        .expect("a wrong fingerprint must fail");
    assert_eq!(
        err.code,
        ConnectErrorCode::HostKeyMismatch,
        "{}",
        err.detail
    );
}

#[tokio::test]
async fn key_login_streams_command_lines_and_reaches_docker_through_the_session() {
    let t = TargetEnv::load();
    let target = SshTarget::connect(params(&t, Credentials::Key(t.private_key())))
        .await
        .expect("connect");
    let mut lines = Vec::new();
    let out = target
        .run(
            "echo first; echo second >&2; printf 'no newline'; exit 3",
            &mut |l| lines.push(l.to_owned()),
        )
        .await
        .expect("run");
    assert_eq!(out.exit_code, 3);
    assert_eq!(lines, ["first", "second", "no newline"]);
    let version = target.docker().version().await.expect("docker over ssh");
    assert!(version.version.is_some());
    // Several Docker calls at once, each on its own SSH channel.
    let calls = (0..8).map(|_| {
        target
            .docker()
            .list_networks(None::<bollard::query_parameters::ListNetworksOptions>)
    });
    for r in futures_util::future::join_all(calls).await {
        assert!(
            r.expect("list networks")
                .iter()
                .any(|n| n.name.as_deref() == Some("bridge"))
        );
    }
}

#[tokio::test]
async fn password_login_works_and_a_wrong_password_is_auth_failed() {
    let t = TargetEnv::load();
    let target = SshTarget::connect(params(&t, Credentials::Password(t.password.clone())))
        .await
        .expect("connect");
    let out = target.run("id -un", &mut |_| {}).await.expect("run");
    assert!(out.success());
    assert_eq!(out.tail, std::slice::from_ref(&t.user));
    let err = SshTarget::connect(params(&t, Credentials::Password("wrong-password".into())))
        .await
        .err()
        .expect("must fail");
    assert_eq!(err.code, ConnectErrorCode::AuthFailed, "{}", err.detail);
}

#[tokio::test]
async fn a_closed_port_is_connection_refused() {
    let t = TargetEnv::load();
    let mut p = params(&t, Credentials::Password("x".into()));
    p.port = 1;
    let err = SshTarget::connect(p).await.err().expect("must fail");
    assert_eq!(
        err.code,
        ConnectErrorCode::ConnectionRefused,
        "{}",
        err.detail
    );
}

#[tokio::test]
async fn dropping_a_running_command_stops_it_on_the_server() {
    let t = TargetEnv::load();
    let target = SshTarget::connect(params(&t, Credentials::Key(t.private_key())))
        .await
        .expect("connect");
    let marker = format!("oec-cancel-{}", uuid::Uuid::new_v4().simple());
    let cmd = format!("sleep 300 # {marker}");
    let mut ignore = |_: &str| {};
    let run = target.run(&cmd, &mut ignore);
    assert!(
        tokio::time::timeout(Duration::from_millis(1500), run)
            .await
            .is_err()
    );
    // The remote sleep is hung up once the channel is gone.
    let mut gone = false;
    for _ in 0..40 {
        // `[o]` keeps the pattern from matching this shell's own command line.
        let pattern = format!("[o]{}", &marker[1..]);
        let out = target
            .run(&format!("pgrep -f '{pattern}' || true"), &mut |_| {})
            .await
            .expect("pgrep");
        if out.tail.iter().all(|l| l.trim().is_empty()) {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "the remote command kept running");
}

#[tokio::test]
async fn the_local_target_does_the_same_on_this_machine() {
    let target = oec_worker::target::Target::Local(
        oec_worker::target::local::LocalTarget::new().expect("local docker"),
    );
    let mut lines = Vec::new();
    let out = target
        .run("echo one; echo two >&2; exit 4", &mut |l| {
            lines.push(l.to_owned())
        })
        .await
        .expect("run");
    assert_eq!(out.exit_code, 4);
    lines.sort();
    assert_eq!(lines, ["one", "two"]);
    assert!(
        target
            .docker()
            .version()
            .await
            .expect("docker")
            .version
            .is_some()
    );
    // A dropped command takes its children with it.
    let marker = format!("oec-local-{}", uuid::Uuid::new_v4().simple());
    let cmd = format!("sh -c 'sleep 300 # {marker}'");
    let mut ignore = |_: &str| {};
    assert!(
        tokio::time::timeout(Duration::from_millis(500), target.run(&cmd, &mut ignore))
            .await
            .is_err()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pattern = format!("[o]{}", &marker[1..]);
    let left = std::process::Command::new("pgrep")
        .args(["-f", &pattern])
        .output()
        .expect("pgrep");
    assert!(
        left.stdout.is_empty(),
        "left behind: {}",
        String::from_utf8_lossy(&left.stdout)
    );
}

#[tokio::test]
async fn files_are_written_atomically_with_hostile_names_on_both_targets() {
    let t = TargetEnv::load();
    let ssh = oec_worker::target::Target::Ssh(
        SshTarget::connect(params(&t, Credentials::Key(t.private_key())))
            .await
            .expect("connect"),
    );
    let local = oec_worker::target::Target::Local(
        oec_worker::target::local::LocalTarget::new().expect("local"),
    );
    for (name, target) in [("ssh", ssh), ("local", local)] {
        let dir = format!("/opt/paasportal/oec-test-{}", uuid::Uuid::new_v4().simple());
        let path = format!("{dir}/sub dir/it's $(id) `x`.conf");
        let body = "[options]\ndb_password = s3cr$t'\"\n";
        target
            .write_file(&path, body.as_bytes(), 0o640)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        let q = oec_worker::target::shell::quote(&path);
        let mut lines = Vec::new();
        let out = target
            .run(&format!("stat -c %a {q} && cat {q}"), &mut |l| {
                lines.push(l.to_owned())
            })
            .await
            .expect("read back");
        assert!(out.success(), "{name}: {lines:?}");
        assert_eq!(
            lines,
            ["640", "[options]", "db_password = s3cr$t'\""],
            "{name}"
        );
        target
            .run(
                &format!("rm -rf {}", oec_worker::target::shell::quote(&dir)),
                &mut |_| {},
            )
            .await
            .expect("cleanup");
    }
}
