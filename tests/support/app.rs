//! `spawn_app`: the real server on port 0 with a fresh database (a SQLite file in a
//! temp dir, or a new PostgreSQL database), and a stub LLM gateway that speaks the
//! OpenAI chat completions protocol.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine;
use hmac::{Hmac, Mac};
use hookrun::config::Settings;
use hookrun::projections::ProjectionRunner;
use hookrun::startup::Application;
use serde_json::{Value, json};
use sha2::Sha256;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

pub const PLATFORM_KEY: &str = "sk-platform-test";
pub const ADMIN_TOKEN: &str = "admin-test-token";
pub const GATEWAY_OUTPUT: &str = "Triage: restart the worker.";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub gateway: MockServer,
    pub projector: ProjectionRunner,
    pub dir: tempfile::TempDir,
    pub backend: Backend,
    pub state: actix_web::web::Data<hookrun::http::AppState>,
    pub sweeper: hookrun::recovery::Sweeper,
    /// The settings the server was started with (the CLI and other nodes reuse them).
    pub env: HashMap<String, String>,
}

/// A completion as the gateway would send it.
pub fn completion(content: &str) -> Value {
    json!({
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
    })
}

/// Starts the app; `None` when PostgreSQL tests are switched off.
pub async fn spawn_app(backend: Backend, test: &str) -> Option<TestApp> {
    spawn_app_with(backend, test, &[]).await
}

pub async fn spawn_app_with(
    backend: Backend,
    test: &str,
    extra: &[(&str, &str)],
) -> Option<TestApp> {
    // Not from the pool: a pooled server could get calls from an earlier test's app.
    let gateway = MockServer::builder().start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion(GATEWAY_OUTPUT)))
        .with_priority(10)
        .mount(&gateway)
        .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut env: HashMap<String, String> = HashMap::new();
    env.insert("HOOKRUN_LISTEN".into(), "127.0.0.1:0".into());
    env.insert("HOOKRUN_DATA_DIR".into(), dir.path().display().to_string());
    env.insert("HOOKRUN_LLM_BASE_URL".into(), gateway.uri());
    env.insert("HOOKRUN_LLM_API_KEY".into(), PLATFORM_KEY.into());
    env.insert("HOOKRUN_ADMIN_TOKEN".into(), ADMIN_TOKEN.into());
    env.insert("HOOKRUN_MASTER_KEY".into(), test_master_key());
    // An explicit database (a second app on the first one's data) needs no fresh one.
    let explicit_db = extra.iter().any(|(k, _)| *k == "HOOKRUN_DATABASE_URL");
    if backend == Backend::Postgres && !explicit_db {
        let url = super::pg::fresh_database(test).await?;
        env.insert("HOOKRUN_DATABASE_URL".into(), url);
    }
    for (k, v) in extra {
        env.insert(k.to_string(), v.to_string());
    }
    Some(launch(env, backend, gateway, dir).await)
}

/// Starts a server with exactly these settings.
async fn launch(
    env: HashMap<String, String>,
    backend: Backend,
    gateway: MockServer,
    dir: tempfile::TempDir,
) -> TestApp {
    let settings = Settings::from_lookup(|k| env.get(k).cloned()).expect("settings");
    let app = Application::build(settings).await.expect("app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let projector = app.projector();
    let state = app.state();
    let sweeper = app.sweeper();
    actix_web::rt::spawn(app.run_until_stopped());
    TestApp {
        address,
        client: reqwest::Client::new(),
        gateway,
        projector,
        dir,
        backend,
        state,
        sweeper,
        env,
    }
}

/// Runs the `hookrun` binary with these settings (blocking).
pub fn run_cli(env: &HashMap<String, String>, args: &[&str]) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_hookrun"));
    cmd.args(args).env("HOOKRUN_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run hookrun")
}

/// The base64 master key every test app uses unless told otherwise.
pub fn test_master_key() -> String {
    base64::engine::general_purpose::STANDARD.encode([7u8; 32])
}

/// `sha256=<hex>` keyed by the base64-decoded secret, as the seed system's senders do.
pub fn github_signature(secret: &str, body: &[u8]) -> String {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret)
        .expect("base64 secret");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

pub struct Agent {
    pub id: String,
    pub secret: String,
}

impl TestApp {
    /// Another server on the same database and settings: a restart, or a second node.
    /// (It talks to this app's gateway; its own `gateway` and `dir` are unused.)
    pub async fn another_node(&self) -> TestApp {
        self.another_node_with(self.env.clone()).await
    }

    /// Another server with these settings (a changed copy of `self.env`).
    pub async fn another_node_with(&self, mut env: HashMap<String, String>) -> TestApp {
        env.insert("HOOKRUN_LISTEN".into(), "127.0.0.1:0".into());
        let gateway = MockServer::builder().start().await;
        let dir = tempfile::tempdir().expect("temp dir");
        launch(env, self.backend, gateway, dir).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// The database the events are stored in: the database, or the one
    /// `HOOKRUN_EVENT_STORE_URL` names (opened again here).
    pub async fn events_db(&self) -> hookrun::db::Db {
        let settings = &self.state.settings;
        if settings.event_store == settings.database {
            return self.state.db.clone();
        }
        hookrun::db::Db::connect(settings.event_store.url())
            .await
            .expect("the events database")
    }

    /// The app's database URL (for a second app or the CLI on the same data).
    pub fn database_url(&self) -> String {
        self.state.settings.database.url().to_owned()
    }

    /// Runs the `hookrun` binary on this app's database with its master key unless
    /// `env` overrides it. It runs on a blocking thread: the test's own thread also
    /// drives the server's database connections, which must not stall meanwhile.
    pub async fn cli(&self, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_hookrun"));
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOOKRUN_DATA_DIR", self.dir.path())
            .env("HOOKRUN_DATABASE_URL", self.database_url())
            .env("HOOKRUN_MASTER_KEY", test_master_key());
        for (k, v) in env {
            cmd.env(k, v);
        }
        tokio::task::spawn_blocking(move || cmd.output().expect("run hookrun"))
            .await
            .expect("the hookrun process")
    }

    /// Like [`TestApp::cli`], but fails the test unless it succeeds; its stdout.
    pub async fn cli_ok(&self, args: &[&str], env: &[(&str, &str)]) -> String {
        let out = self.cli(args, env).await;
        assert!(
            out.status.success(),
            "hookrun {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("UTF-8 output")
    }

    /// Waits until the audit log has written everything recorded so far.
    pub async fn flush_audit(&self) {
        self.state.audit.flush().await;
    }

    /// The agent's delivery audit log as the API lists it (newest first).
    pub async fn deliveries(&self, key: &str, agent_id: &str) -> Vec<Value> {
        self.flush_audit().await;
        let r = self
            .get(key, &format!("/api/agents/{agent_id}/deliveries?limit=500"))
            .await;
        assert_eq!(r.status(), 200, "deliveries");
        r.json::<Value>().await.unwrap()["deliveries"]
            .as_array()
            .unwrap()
            .clone()
    }

    /// Runs `n` executions of a new agent of a new `tenant` to the end, one after
    /// another; returns the tenant key and the execution ids.
    pub async fn run_executions(&self, tenant: &str, n: usize) -> (String, Vec<String>) {
        let (key, agent) = self.tenant_with_agent(tenant).await;
        let prefix = format!("d-{tenant}");
        let mut ids = Vec::new();
        for i in 0..n {
            let id = self.send_numbered(&agent, &prefix, i).await;
            self.wait_terminal(&key, &id).await;
            ids.push(id);
        }
        (key, ids)
    }

    /// Sends `n` signed webhooks to `agent` one after another, without waiting for them
    /// to run, and returns the ids of the executions they were accepted as.
    pub async fn send_accepted(&self, agent: &Agent, n: usize, prefix: &str) -> Vec<String> {
        let mut ids = Vec::new();
        for i in 0..n {
            ids.push(self.send_numbered(agent, prefix, i).await);
        }
        ids
    }

    /// Sends webhook number `i` (body `{"n":i}`, delivery id `{prefix}-{i}`) and returns
    /// the id of the execution it was accepted as.
    async fn send_numbered(&self, agent: &Agent, prefix: &str, i: usize) -> String {
        let body = format!(r#"{{"n":{i}}}"#);
        let r = self
            .send_signed(agent, body.as_bytes(), &format!("{prefix}-{i}"))
            .await;
        accepted_execution(r).await
    }

    /// The events of an execution as the API answers them (`/api/executions/{id}/events`).
    pub async fn execution_events(&self, key: &str, id: &str) -> Vec<Value> {
        let v: Value = self
            .get(key, &format!("/api/executions/{id}/events"))
            .await
            .json()
            .await
            .unwrap();
        v["events"].as_array().unwrap().clone()
    }

    /// Events of one stream, in order.
    pub async fn stream(&self, stream: &str) -> Vec<hookrun::events::RecordedEvent> {
        self.state
            .store
            .read_stream(stream, 0, 10_000)
            .await
            .unwrap()
    }

    pub async fn create_tenant(&self, tenant: &str) -> String {
        let r = self
            .client
            .post(self.url("/api/tenants"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({"tenant_id": tenant}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "create tenant");
        r.json::<Value>().await.unwrap()["api_key"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub async fn create_agent_with(&self, key: &str, body: Value) -> reqwest::Response {
        self.client
            .post(self.url("/api/agents"))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn create_agent(&self, key: &str, schema: Option<Value>) -> Agent {
        let mut body = json!({
            "name": "triage",
            "system_prompt": "You triage support tickets.",
            "llm_config": {"model": "gpt-4o-mini", "temperature": 0.1},
        });
        if let Some(schema) = schema {
            body["payload_schema"] = schema;
        }
        let r = self.create_agent_with(key, body).await;
        assert_eq!(r.status(), 201, "create agent");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["status"], "active");
        Agent {
            id: v["agent_id"].as_str().unwrap().to_owned(),
            secret: v["webhook_secret"].as_str().unwrap().to_owned(),
        }
    }

    /// A tenant with an agent, in one step.
    pub async fn tenant_with_agent(&self, tenant: &str) -> (String, Agent) {
        let key = self.create_tenant(tenant).await;
        let agent = self.create_agent(&key, None).await;
        (key, agent)
    }

    pub async fn post_webhook(
        &self,
        agent_id: &str,
        body: &[u8],
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut r = self
            .client
            .post(self.url(&format!("/webhooks/agents/{agent_id}")))
            .body(body.to_vec());
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.send().await.unwrap()
    }

    /// A correctly signed JSON webhook with a delivery id.
    pub async fn send_signed(
        &self,
        agent: &Agent,
        body: &[u8],
        delivery: &str,
    ) -> reqwest::Response {
        let sig = github_signature(&agent.secret, body);
        self.post_webhook(
            &agent.id,
            body,
            &[
                ("Content-Type", "application/json"),
                ("X-Hub-Signature-256", &sig),
                ("X-GitHub-Delivery", delivery),
            ],
        )
        .await
    }

    pub async fn get(&self, key: &str, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
    }

    /// `GET /metrics` (no credentials), as text.
    pub async fn metrics(&self) -> String {
        let r = self.client.get(self.url("/metrics")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.text().await.unwrap()
    }

    /// Polls the read model until the execution is terminal (deadline 15 s).
    pub async fn wait_terminal(&self, key: &str, execution_id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let r = self
                .get(key, &format!("/api/executions/{execution_id}"))
                .await;
            if r.status() == 200 {
                let v: Value = r.json().await.unwrap();
                if v["status"] == "succeeded" || v["status"] == "failed" {
                    return v;
                }
            }
            assert!(
                Instant::now() < deadline,
                "execution {execution_id} not terminal in time"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every event in the store, in global order.
    pub async fn all_events(&self) -> Vec<hookrun::events::RecordedEvent> {
        self.state
            .store
            .read_all(hookrun::events::Position::START, 100_000)
            .await
            .unwrap()
    }

    /// Number of execution streams stored, counted in the events table. Not through
    /// `$all`: on PostgreSQL it holds a transaction's events back while any older
    /// transaction in the cluster is open, another test's too, so a count read there
    /// just after an append could miss it and a later one find it.
    pub async fn execution_count(&self) -> usize {
        let sql = "SELECT count(*) FROM events WHERE event_type = 'ExecutionQueued'";
        let count: i64 = hookrun::with_db_read!(&self.events_db().await, |pool| {
            sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
        });
        usize::try_from(count).unwrap()
    }
}

/// Asserts the JSON error shape and returns the error object.
pub async fn assert_error(r: reqwest::Response, status: u16) -> Value {
    assert_eq!(r.status(), status, "status");
    let v: Value = r.json().await.expect("JSON error body");
    let error = v["error"].clone();
    assert!(error["code"].is_string(), "error.code in {v}");
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "error.message in {v}"
    );
    error
}

/// The execution id of a webhook answered `202 Accepted`.
pub async fn accepted_execution(r: reqwest::Response) -> String {
    assert_eq!(r.status(), 202);
    r.json::<Value>().await.unwrap()["execution_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The `type` of each event as the API answers them.
pub fn event_types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}
