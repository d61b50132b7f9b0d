//! Structured fields: typed key-value pairs carried by a record, and the
//! context fields a thread binds to every record it logs.
//!
//! A key is 1 to [`MAX_KEY`] bytes of ASCII letters, digits, `_`, `.` and
//! `-`, so it needs no escaping in any format (JSON, logfmt, RFC 5424
//! SD-PARAM names, journald field names after upper-casing). A record keeps
//! the first value of a key: the fields given with the call come before the
//! thread's context fields, so a call's field wins over a context field of
//! the same key.

use std::cell::{Cell, RefCell};

/// The longest key, in bytes (RFC 5424 allows 32 for an SD-PARAM name).
pub const MAX_KEY: usize = 32;

/// The most fields one call may give, and the most context fields one
/// thread may hold.
pub const MAX_FIELDS: usize = 64;

/// A field's value, borrowed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    /// Bytes (UTF-8 expected, anything accepted).
    Str(&'a [u8]),
    /// A signed integer.
    Int(i64),
    /// An unsigned integer.
    Uint(u64),
    /// A double (NaN and the infinities included).
    Double(f64),
    /// A boolean.
    Bool(bool),
}

/// A key and its value, borrowed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Field<'a> {
    /// The key (see [`valid_key`]).
    pub key: &'a [u8],
    /// The value.
    pub value: Value<'a>,
}

/// Fields readable by index: a record's, or a C array of them.
pub trait FieldList {
    /// How many fields.
    fn count(&self) -> usize;
    /// Field `i` (`i < count()`).
    fn field(&self, i: usize) -> Field<'_>;
}

impl<const N: usize> FieldList for [Field<'_>; N] {
    fn count(&self) -> usize {
        N
    }
    fn field(&self, i: usize) -> Field<'_> {
        self[i]
    }
}

impl FieldList for Vec<Field<'_>> {
    fn count(&self) -> usize {
        self.len()
    }
    fn field(&self, i: usize) -> Field<'_> {
        self[i]
    }
}

/// No fields.
pub const NO_FIELDS: &[Field<'static>; 0] = &[];

/// Iterates over a field list.
pub fn iter(list: &dyn FieldList) -> impl Iterator<Item = Field<'_>> {
    (0..list.count()).map(move |i| list.field(i))
}

/// True for a key fields may have: 1 to [`MAX_KEY`] bytes of ASCII
/// letters, digits, `_`, `.` and `-`.
pub fn valid_key(key: &[u8]) -> bool {
    (1..=MAX_KEY).contains(&key.len())
        && key
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
}

/// Why fields were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldError {
    /// A key is not [`valid_key`].
    BadKey,
    /// More than [`MAX_FIELDS`] fields.
    TooMany,
    /// The calling thread is exiting: its thread-locals (the context with
    /// them) are already destroyed, as in a pthread key destructor or an
    /// `atexit` handler.
    Exiting,
}

/// Checks fields given with one call.
pub fn check(list: &dyn FieldList) -> Result<(), FieldError> {
    if list.count() > MAX_FIELDS {
        return Err(FieldError::TooMany);
    }
    if iter(list).all(|f| valid_key(f.key)) {
        Ok(())
    } else {
        Err(FieldError::BadKey)
    }
}

/// An owned value (context fields).
#[derive(Debug, Clone, PartialEq)]
enum OwnedValue {
    Str(Box<[u8]>),
    Int(i64),
    Uint(u64),
    Double(f64),
    Bool(bool),
}

#[derive(Debug, Clone, PartialEq)]
struct Owned {
    key: Box<[u8]>,
    value: OwnedValue,
}

impl Owned {
    fn of(field: Field) -> Owned {
        Owned {
            key: field.key.into(),
            value: match field.value {
                Value::Str(s) => OwnedValue::Str(s.into()),
                Value::Int(v) => OwnedValue::Int(v),
                Value::Uint(v) => OwnedValue::Uint(v),
                Value::Double(v) => OwnedValue::Double(v),
                Value::Bool(v) => OwnedValue::Bool(v),
            },
        }
    }

    fn borrow(&self) -> Field<'_> {
        Field {
            key: &self.key,
            value: match &self.value {
                OwnedValue::Str(s) => Value::Str(s),
                OwnedValue::Int(v) => Value::Int(*v),
                OwnedValue::Uint(v) => Value::Uint(*v),
                OwnedValue::Double(v) => Value::Double(*v),
                OwnedValue::Bool(v) => Value::Bool(*v),
            },
        }
    }
}

/// The calling thread's context fields, in the order they were first set.
#[derive(Default)]
struct Context(Vec<Owned>);

impl FieldList for Context {
    fn count(&self) -> usize {
        self.0.len()
    }
    fn field(&self, i: usize) -> Field<'_> {
        self.0[i].borrow()
    }
}

thread_local! {
    static CONTEXT: RefCell<Context> = RefCell::new(Context::default());
    /// Whether this thread ever set a context field. Until it does, its
    /// `CONTEXT` is never touched, so a thread that only logs registers
    /// no thread-exit destructor for it (nothing to free, nothing that a
    /// forked child or a thread ending without running destructors could
    /// leak).
    static HAS_CONTEXT: Cell<bool> = const { Cell::new(false) };
}

/// True when the calling thread ever set a context field.
fn has_context() -> bool {
    HAS_CONTEXT.try_with(Cell::get).unwrap_or(false)
}

/// Binds `field` to every record the calling thread logs from now on,
/// replacing the value of a context field with the same key (which keeps
/// its place). `Err` for a bad key, a new key past [`MAX_FIELDS`], or a
/// thread whose context is already destroyed.
pub fn context_set(field: Field) -> Result<(), FieldError> {
    if !valid_key(field.key) {
        return Err(FieldError::BadKey);
    }
    let _ = HAS_CONTEXT.try_with(|h| h.set(true));
    let set = CONTEXT.try_with(|c| {
        let mut c = c.borrow_mut();
        if let Some(old) = c.0.iter_mut().find(|o| *o.key == *field.key) {
            *old = Owned::of(field);
            return Ok(());
        }
        if c.0.len() >= MAX_FIELDS {
            return Err(FieldError::TooMany);
        }
        c.0.push(Owned::of(field));
        Ok(())
    });
    set.unwrap_or(Err(FieldError::Exiting))
}

/// Removes the calling thread's context field `key`; false when it had
/// none (also once its context is destroyed, at thread exit).
pub fn context_remove(key: &[u8]) -> bool {
    if !has_context() {
        return false;
    }
    CONTEXT
        .try_with(|c| {
            let mut c = c.borrow_mut();
            let before = c.0.len();
            c.0.retain(|o| *o.key != *key);
            c.0.len() != before
        })
        .unwrap_or(false)
}

/// Removes all of the calling thread's context fields (nothing to do once
/// its context is destroyed, at thread exit).
pub fn context_clear() {
    if !has_context() {
        return;
    }
    let _ = CONTEXT.try_with(|c| c.borrow_mut().0.clear());
}

/// How many context fields the calling thread holds (0 once its context is
/// destroyed).
pub fn context_len() -> usize {
    if !has_context() {
        return 0;
    }
    CONTEXT.try_with(|c| c.borrow().0.len()).unwrap_or(0)
}

/// Calls `f` with the calling thread's context fields. At thread exit
/// (the thread-local already gone), with none.
pub fn with_context<T>(f: impl FnOnce(&dyn FieldList) -> T) -> T {
    if !has_context() {
        return f(NO_FIELDS);
    }
    let mut f = Some(f);
    let done = CONTEXT.try_with(|c| match c.try_borrow() {
        Ok(c) => (f.take().expect("called once"))(&*c),
        // Never expected: a context call re-entered from inside one.
        Err(_) => (f.take().expect("called once"))(NO_FIELDS),
    });
    match done {
        Ok(v) => v,
        Err(_) => (f.take().expect("not called"))(NO_FIELDS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s<'a>(key: &'a str, v: &'a str) -> Field<'a> {
        Field {
            key: key.as_bytes(),
            value: Value::Str(v.as_bytes()),
        }
    }

    #[test]
    fn keys() {
        assert!(valid_key(b"request_id"));
        assert!(valid_key(b"a.b-c_9"));
        assert!(valid_key(&[b'k'; MAX_KEY]));
        assert!(!valid_key(&[b'k'; MAX_KEY + 1]));
        for bad in [&b""[..], b"a b", b"a=b", b"a\"", b"a]", b"\xc3\xa9", b"a\n"] {
            assert!(!valid_key(bad), "{bad:?}");
        }
    }

    #[test]
    fn context_is_per_thread_and_keeps_places() {
        context_clear();
        context_set(s("a", "1")).unwrap();
        context_set(s("b", "2")).unwrap();
        context_set(s("a", "3")).unwrap();
        with_context(|c| {
            let got: Vec<_> = iter(c).collect();
            assert_eq!(got, vec![s("a", "3"), s("b", "2")]);
        });
        std::thread::spawn(|| assert_eq!(context_len(), 0))
            .join()
            .unwrap();
        assert!(context_remove(b"a"));
        assert!(!context_remove(b"a"));
        assert_eq!(context_len(), 1);
        assert_eq!(context_set(s("bad key", "x")), Err(FieldError::BadKey));
        context_clear();
        for i in 0..MAX_FIELDS {
            context_set(s(&format!("k{i}"), "v")).unwrap();
        }
        assert_eq!(context_set(s("one_more", "v")), Err(FieldError::TooMany));
        context_set(s("k0", "replaced")).unwrap();
        context_clear();
        assert_eq!(context_len(), 0);
    }
}
