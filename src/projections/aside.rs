//! A thread of its own for the rebuilds a running service starts. The service's other
//! background tasks (the event store's group commit, the audit log, the live read
//! models) share the actor system's one thread, and a rebuild decodes and folds
//! events without pause: on that thread it held webhooks' appends back until it was
//! done (SQLite, 1,000,000 events, webhooks at 2,000/s: answers took up to 20 s for
//! the 19 s the rebuild ran; BENCHMARKS.md, item 45).
//!
//! On SQLite the thread also runs at the lowest priority: the rebuild's flushes take
//! the one writer that the appends need, and the less CPU the rebuild gets while the
//! service is busy, the less often it flushes. Threads a thread starts inherit its
//! priority, so the SQLite connections (each a thread) are all opened when the
//! service starts, not by a rebuild (`db.rs`). PostgreSQL connections are sockets
//! polled by the runtime that opened them: a rebuild there runs at normal priority,
//! so that a connection it opens and hands back to the pool is not polled late.
//!
//! The runtimes live as long as the process: connections a rebuild opens go back to
//! pools the service keeps using.

use std::future::Future;
use std::sync::OnceLock;

use tokio::runtime::{Builder, Handle};
use tokio::task::JoinHandle;

use crate::db::Db;

static NORMAL: OnceLock<Option<Handle>> = OnceLock::new();
static LOWEST: OnceLock<Option<Handle>> = OnceLock::new();

/// Runs a rebuild of `db`'s read models on a thread of its own (on the caller's
/// runtime if that thread could not be started).
pub fn spawn<F>(db: &Db, task: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let runtime = match db {
        Db::Sqlite(_) => LOWEST.get_or_init(|| start(true)),
        Db::Postgres(_) => NORMAL.get_or_init(|| start(false)),
    };
    match runtime {
        Some(runtime) => runtime.spawn(task),
        None => tokio::spawn(task),
    }
}

fn start(lowest: bool) -> Option<Handle> {
    let started = Builder::new_current_thread()
        .enable_all()
        .build()
        .and_then(|runtime| {
            let handle = runtime.handle().clone();
            std::thread::Builder::new()
                .name("hookrun-rebuild".into())
                .spawn(move || {
                    if lowest {
                        lower_priority();
                    }
                    runtime.block_on(std::future::pending::<()>())
                })?;
            Ok(handle)
        });
    match started {
        Ok(handle) => Some(handle),
        Err(e) => {
            tracing::warn!("no thread of its own for rebuilds ({e}): they share the service's");
            None
        }
    }
}

/// Gives this thread the lowest priority (on Linux a nice value is per thread): the
/// scheduler then gives the service's threads the cores they ask for, and this one
/// what is left over.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: setpriority only reads its arguments; `who` 0 is the calling thread.
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) } != 0 {
            let e = std::io::Error::last_os_error();
            tracing::warn!("rebuilds run at the service's priority: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The calling thread's own nice value.
    fn nice() -> i32 {
        // SAFETY: getpriority only reads its arguments; `who` 0 is the calling thread.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
    }

    #[tokio::test]
    async fn a_sqlite_rebuild_runs_on_a_thread_of_its_own_at_the_lowest_priority() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open_sqlite_file(&dir.path().join("hookrun.db"))
            .await
            .unwrap();
        let (here, own) = (std::thread::current().id(), nice());
        let (thread, name, priority) = spawn(&db, async {
            let me = std::thread::current();
            (me.id(), me.name().map(str::to_owned), nice())
        })
        .await
        .unwrap();
        assert_ne!(thread, here);
        assert_eq!(name.as_deref(), Some("hookrun-rebuild"));
        assert_eq!(priority, 19);
        assert_eq!(nice(), own, "the caller's thread keeps its priority");
    }
}
