//! Threads for hashing work that may trail the request it belongs to: the torrent piece hashes
//! of a PUT (which follow the MD5 that sets the PUT's pace) and the hashing of a completed
//! multipart object. They run at a lowered priority so that, on a busy machine, the work a
//! client is waiting for keeps its core; where cores are spare the priority changes nothing.

use tokio::sync::oneshot;

/// Niceness of the background hashing threads (0 is normal, 19 the lowest priority).
const NICE: i32 = 10;

/// Runs `work` on a new thread at the lowered priority [`NICE`]; the receiver yields its
/// result, or an error if the thread could not finish. A thread of its own, not one of tokio's
/// blocking pool: without privileges a thread's priority can only be lowered, so a pool thread
/// would keep it for every later task.
pub(crate) fn spawn_low_priority<T: Send + 'static>(
    name: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<oneshot::Receiver<T>> {
    let (tx, rx) = oneshot::channel();
    std::thread::Builder::new()
        .name(name.into())
        .stack_size(256 * 1024)
        .spawn(move || {
            // Refused only by seccomp-like sandboxes; the work then runs at normal priority.
            let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), NICE);
            let _ = tx.send(work());
        })?;
    Ok(rx)
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn runs_at_lowered_priority() {
        let rx = super::spawn_low_priority("test", || {
            rustix::process::getpriority_process(Some(rustix::thread::gettid()))
        })
        .unwrap();
        assert_eq!(rx.await.unwrap().unwrap(), super::NICE);
    }
}
