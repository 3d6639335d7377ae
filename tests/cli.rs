//! The binary as an operator uses it: `hookrun serve` on the embedded default, the
//! CLI (`tenant create`, `agent create`, `sign`, `events`), the printed curl command
//! run by a shell — and no secret in plaintext in the database files or the logs.

use crate::support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

struct Server {
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn hookrun(dir: &Path, env: &[(&str, String)], args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hookrun"));
    cmd.args(args)
        .env("HOOKRUN_DATA_DIR", dir)
        .env("HOOKRUN_LOG", "debug");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run hookrun");
    assert!(
        out.status.success(),
        "hookrun {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn the_cli_and_server_run_a_signed_webhook_and_keep_no_secret_in_plaintext() {
    let gateway = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(support::app::completion("done")))
        .mount(&gateway)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let env = [
        ("HOOKRUN_LISTEN", listen.clone()),
        ("HOOKRUN_LLM_BASE_URL", gateway.uri()),
        ("HOOKRUN_LLM_API_KEY", "sk-platform-secret-1".to_owned()),
    ];
    let log_path = dir.path().join("server.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let server = Server {
        child: Command::new(env!("CARGO_BIN_EXE_hookrun"))
            .arg("serve")
            .env("HOOKRUN_DATA_DIR", dir.path())
            .env("HOOKRUN_LOG", "debug")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    };
    let client = reqwest::Client::new();
    let base = format!("http://{listen}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while client.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(
            Instant::now() < deadline,
            "server did not start: {}",
            std::fs::read_to_string(&log_path).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The master key was generated into the data dir, readable by the owner only.
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.path().join("master.key"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    let tenant: Value =
        serde_json::from_slice(&hookrun(dir.path(), &env, &["tenant", "create", "acme"]).stdout)
            .unwrap();
    let api_key = tenant["api_key"].as_str().unwrap().to_owned();
    let agent: Value = serde_json::from_slice(
        &hookrun(
            dir.path(),
            &env,
            &[
                "agent",
                "create",
                "--tenant",
                "acme",
                "--name",
                "triage",
                "--system-prompt",
                "Triage it.",
            ],
        )
        .stdout,
    )
    .unwrap();
    let agent_id = agent["agent_id"].as_str().unwrap().to_owned();
    let secret = agent["webhook_secret"].as_str().unwrap().to_owned();
    assert_eq!(
        agent["webhook_url"],
        format!("{base}/webhooks/agents/{agent_id}")
    );

    // `sign` prints a curl command that a shell can run as it is.
    let payload = r#"{"ticket_id":"TKT-123","note":"it's slow"}"#;
    let curl = String::from_utf8(
        hookrun(
            dir.path(),
            &env,
            &["sign", "--agent", &agent_id, "--payload", payload],
        )
        .stdout,
    )
    .unwrap();
    let out = Command::new("sh").arg("-c").arg(&curl).output().unwrap();
    let answer: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("curl said {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(answer["status"], "queued", "{answer}");
    let execution_id = answer["execution_id"].as_str().unwrap().to_owned();

    // BYOK: the tenant key is sealed too.
    let r = client
        .put(format!("{base}/api/agents/{agent_id}/llm-key"))
        .bearer_auth(&api_key)
        .json(&json!({"api_key": "sk-tenant-secret-2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = client
            .get(format!("{base}/api/executions/{execution_id}"))
            .bearer_auth(&api_key)
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            let row: Value = r.json().await.unwrap();
            if row["status"] == "succeeded" {
                assert_eq!(row["output"], "done");
                break;
            }
        }
        assert!(Instant::now() < deadline, "execution did not succeed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // `events` prints the execution's stream as JSON lines.
    let stream = format!("execution-{execution_id}");
    let lines =
        String::from_utf8(hookrun(dir.path(), &env, &["events", "--stream", &stream]).stdout)
            .unwrap();
    let types: Vec<String> = lines
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["event_type"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        types,
        [
            "ExecutionQueued",
            "ExecutionStarted",
            "LlmCalled",
            "ExecutionSucceeded"
        ]
    );

    drop(server);
    let mut haystack = std::fs::read(&log_path).unwrap();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("hookrun")
        // hookrun.db and hookrun-events.db, with WALs
        {
            haystack.extend(std::fs::read(&path).unwrap());
        }
    }
    let text = String::from_utf8_lossy(&haystack);
    assert!(
        text.contains("generated a new master key"),
        "the generated key is announced in the log"
    );
    for needle in [
        secret.as_str(),
        api_key.as_str(),
        "sk-tenant-secret-2",
        "sk-platform-secret-1",
    ] {
        assert!(
            !text.contains(needle),
            "a secret is stored or logged in plaintext"
        );
    }
    // A known plaintext is present, so the search itself works...
    assert!(text.contains("Triage it."));
    // ...and the webhook payload is not: it is sealed under the tenant's data key.
    assert!(
        !text.contains("TKT-123"),
        "the payload is stored in plaintext"
    );
}
