//! Remembers the message of a panic on the thread that panicked, so the child guard that
//! drops during the unwinding can tell its supervisor *why* the child died.

use std::cell::RefCell;
use std::sync::Once;

thread_local! {
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

static INSTALL: Once = Once::new();

/// Installs the hook once per process; the previous hook still prints the usual report.
pub fn install_hook() {
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = message(info.payload()).unwrap_or_else(|| "panic".to_string());
            let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
            LAST_PANIC.with(|p| *p.borrow_mut() = Some(format!("{msg}{at}")));
            previous(info);
        }));
    });
}

/// The text a panic was raised with (`panic!` gives a `&str` or a `String`), if it has one.
pub fn message(payload: &(dyn std::any::Any + Send)) -> Option<String> {
    payload.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| payload.downcast_ref::<String>().cloned())
}

/// Takes the last panic message recorded on this thread.
pub fn take_last() -> Option<String> {
    LAST_PANIC.with(|p| p.borrow_mut().take())
}
