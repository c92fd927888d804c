//! Making a handle: `SharedHashMap(...)` on shared memory, a file or a Redis server, and the
//! pickled form (`__reduce__`) that makes the same call in another process.

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use shmap::{AttachOptions, Closable, Location, MapBackend, MapOps};
use shmap_backends::{CertReqs, LockFreeMap, RedisOptions};

use crate::codec::Serializer;
use crate::errors::to_py;
use crate::sizes::{check_same_params, user_params, wanted_params, SizeArg};
use crate::store::Store;
use crate::{open, Place, SharedHashMap};

#[pymethods]
impl SharedHashMap {
    #[new]
    #[pyo3(
        signature = (name=None, capacity=SizeArg(None), max_key_size=SizeArg(None), max_value_size=SizeArg(None), create=true, exist_ok=false, trust_foreign=false, track=true, path=None, url=None, timeout=5.0, max_capacity=SizeArg(None), username=None, password=None, ssl_ca_certs=None, ssl_certfile=None, ssl_keyfile=None, ssl_cert_reqs=None, replicas=0, serializer="pickle"),
        text_signature = "(name=None, capacity=1024, max_key_size=256, max_value_size=1024, create=True, exist_ok=False, trust_foreign=False, track=True, path=None, url=None, timeout=5.0, max_capacity=None, username=None, password=None, ssl_ca_certs=None, ssl_certfile=None, ssl_keyfile=None, ssl_cert_reqs=None, replicas=0, serializer=\"pickle\")"
    )]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        name: Option<String>,
        capacity: SizeArg,
        max_key_size: SizeArg,
        max_value_size: SizeArg,
        create: bool,
        exist_ok: bool,
        trust_foreign: bool,
        track: bool,
        path: Option<std::path::PathBuf>,
        url: Option<String>,
        timeout: f64,
        max_capacity: SizeArg,
        username: Option<String>,
        password: Option<String>,
        ssl_ca_certs: Option<PathBuf>,
        ssl_certfile: Option<PathBuf>,
        ssl_keyfile: Option<PathBuf>,
        ssl_cert_reqs: Option<&Bound<'_, PyAny>>,
        replicas: u32,
        serializer: &str,
    ) -> PyResult<Self> {
        let serializer = Serializer::from_name(serializer)?;
        let ssl = Ssl {
            ca_certs: ssl_ca_certs,
            certfile: ssl_certfile,
            keyfile: ssl_keyfile,
            cert_reqs: ssl_cert_reqs.map(cert_reqs).transpose()?,
        };
        if let Some(url) = url {
            return Self::new_on_server(
                py,
                url,
                name,
                path,
                [capacity, max_key_size, max_value_size, max_capacity],
                create,
                exist_ok,
                timeout,
                (username, password),
                ssl,
                replicas,
            )
            .map(|me| Self { serializer, ..me });
        }
        if username.is_some() || password.is_some() || ssl != Ssl::default() || replicas != 0 {
            return Err(PyTypeError::new_err(
                "username, password, replicas and the ssl_ options are for a map on a Redis \
                 server (url=...)",
            ));
        }
        let location = match (name, path) {
            (Some(name), None) => Location::Shm(name),
            (None, Some(path)) => Location::File(path),
            (Some(_), Some(_)) => {
                return Err(PyTypeError::new_err(
                    "give a name (shared memory) or a path (a file), not both",
                ))
            }
            (None, None) => {
                return Err(PyTypeError::new_err(
                    "SharedHashMap() needs a name (shared memory) or a path (a file)",
                ))
            }
        };
        let name = &location.label();
        let sizes = [&capacity, &max_key_size, &max_value_size, &max_capacity];
        let (_, stored) = wanted_params(py, sizes)?;
        let opts = if trust_foreign {
            AttachOptions::trusting()
        } else {
            AttachOptions::default()
        };
        let (map, created) = if create {
            py.detach(|| shmap_typed::open_or_create(&location, stored, exist_ok, opts))
        } else {
            py.detach(|| LockFreeMap::attach_in(&location, opts))
                .map(|m| (m, false))
        }
        .map_err(to_py)?;
        if let Some(v) = map.validation().filter(|v| !v.is_clean()) {
            // The file was torn (an unclean shutdown of the machine): say what was dropped.
            let message = format!(
                "{}: the file was not written out whole before the machine stopped; opening \
                 it kept {} entries and dropped {} torn ones ({} duplicates, {} bad control \
                 words, {} empty words bridged)",
                location.label(),
                v.entries,
                v.dropped,
                v.duplicates,
                v.bad_words,
                v.bridged
            );
            let category = py.get_type::<pyo3::exceptions::PyRuntimeWarning>();
            PyErr::warn(py, &category, &std::ffi::CString::new(message)?, 1)?;
        }
        // A file-backed map is meant to outlive its creator: only shared memory is tracked.
        let tracks = created && track && matches!(location, Location::Shm(_));
        if tracks {
            // A map nobody would remove must not be left: undo the create (the error says why;
            // track=False creates without the tracker).
            if let Err(e) = open::track(py, name) {
                let _ = shmap::unlink(name);
                return Err(e);
            }
        }
        // `capacity` is where the table started: it may have grown since.
        let found = map.initial_params();
        if create && exist_ok {
            check_same_params(name, found, stored, sizes)?;
        }
        Ok(Self {
            map: Store::Shm(Closable::new(map)),
            name: name.to_owned(),
            place: Place::Local(location),
            params: user_params(found),
            trust_foreign,
            serializer,
            scratch: Default::default(),
            tracks,
            tracked_gen: AtomicU64::new(0),
        })
    }

    /// Pickles as "attach to this name", so a handle can be sent to spawned processes.
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
        let me = slf.get();
        let p = me.params;
        let (name, path, url, timeout, opts) = match &me.place {
            Place::Local(Location::Shm(name)) => (Some(name.clone()), None, None, 5.0, None),
            Place::Local(Location::File(path)) => (None, Some(path.clone()), None, 5.0, None),
            // The child logs in as this handle did (the password travels with the pickle, as
            // one in the URL does), over TLS as it did, with the same certificate files.
            Place::Redis { url, opts } => (
                Some(me.name.clone()),
                None,
                Some(url.clone()),
                opts.timeout.as_secs_f64(),
                Some(opts.clone()),
            ),
        };
        let opts = opts.unwrap_or_default();
        let reqs = opts.ssl_cert_reqs.map(|r| match r {
            CertReqs::None => "none",
            CertReqs::Required => "required",
        });
        let args = (
            name,
            p.capacity,
            p.max_key_size,
            p.max_value_size,
            false,
            false,
            me.trust_foreign,
            false,
            path,
            url,
            timeout,
            p.max_capacity,
        );
        // pyo3 converts tuples of up to 12: the later arguments are a tuple of their own.
        let rest = (
            opts.username,
            opts.password,
            opts.ssl_ca_certs,
            opts.ssl_certfile,
            opts.ssl_keyfile,
            reqs,
            opts.replicas,
            me.serializer.name(),
        );
        let args = args
            .into_pyobject(slf.py())?
            .add(rest.into_pyobject(slf.py())?)?;
        PyTuple::new(slf.py(), [slf.get_type().into_any(), args])
    }
}

impl SharedHashMap {
    /// `SharedHashMap(name, ..., url=...)`: the map on a Redis server.
    #[allow(clippy::too_many_arguments)]
    fn new_on_server(
        py: Python<'_>,
        url: String,
        name: Option<String>,
        path: Option<std::path::PathBuf>,
        sizes: [SizeArg; 4],
        create: bool,
        exist_ok: bool,
        timeout: f64,
        (username, password): (Option<String>, Option<String>),
        ssl: Ssl,
        replicas: u32,
    ) -> PyResult<Self> {
        let Some(name) = name else {
            return Err(PyTypeError::new_err(
                "SharedHashMap(url=...) needs a name for the map on the server",
            ));
        };
        if path.is_some() {
            return Err(PyTypeError::new_err(
                "give a path (a file) or a url (a Redis server), not both",
            ));
        }
        if !(timeout.is_finite() && timeout > 0.0) {
            return Err(PyValueError::new_err(format!(
                "timeout must be a positive number of seconds, got {timeout}"
            )));
        }
        let args = [&sizes[0], &sizes[1], &sizes[2], &sizes[3]];
        let (_, stored) = wanted_params(py, args)?;
        let stored = shmap_typed::redis_params(stored, sizes[3].0.is_some());
        let opts = RedisOptions {
            timeout: std::time::Duration::from_secs_f64(timeout),
            username,
            password,
            ssl_ca_certs: ssl.ca_certs,
            ssl_certfile: ssl.certfile,
            ssl_keyfile: ssl.keyfile,
            ssl_cert_reqs: ssl.cert_reqs,
            replicas,
        };
        // Create, attach, or (`exist_ok`) either.
        let map = py
            .detach(|| {
                shmap_typed::open_or_create_redis(
                    &url,
                    &name,
                    stored,
                    (create, exist_ok),
                    opts.clone(),
                )
            })
            .map_err(to_py)?;
        let found = map.params();
        let label = map.label();
        if create && exist_ok {
            // Only the limit is stored on the server: compare it with the argument it came
            // from (max_capacity if given, else capacity).
            let none = SizeArg(None);
            let (capacity, max_capacity) = match sizes[3].0 {
                Some(_) => (&none, &sizes[3]),
                None => (&sizes[0], &none),
            };
            check_same_params(
                &label,
                found,
                stored,
                [capacity, &sizes[1], &sizes[2], max_capacity],
            )?;
        }
        Ok(Self {
            name: map.name().to_owned(),
            map: Store::Redis(Closable::new(map)),
            place: Place::Redis { url, opts },
            params: user_params(found),
            trust_foreign: false,
            serializer: Serializer::Pickle,
            scratch: Default::default(),
            tracks: false,
            tracked_gen: AtomicU64::new(0),
        })
    }
}

/// The TLS options of a `rediss://` URL, named as redis-py names them.
#[derive(Default, PartialEq)]
struct Ssl {
    ca_certs: Option<PathBuf>,
    certfile: Option<PathBuf>,
    keyfile: Option<PathBuf>,
    cert_reqs: Option<CertReqs>,
}

/// `ssl_cert_reqs` as redis-py takes it: `"none"` / `"required"` (`"optional"`), or Python's
/// `ssl.CERT_NONE` / `ssl.CERT_OPTIONAL` / `ssl.CERT_REQUIRED` (an `IntEnum`: 0, 1, 2).
fn cert_reqs(v: &Bound<'_, PyAny>) -> PyResult<CertReqs> {
    if let Ok(s) = v.extract::<String>() {
        return CertReqs::parse(&s).map_err(to_py);
    }
    match v.extract::<i64>() {
        Ok(0) => Ok(CertReqs::None),
        Ok(1 | 2) => Ok(CertReqs::Required),
        Ok(n) => Err(PyValueError::new_err(format!(
            "ssl_cert_reqs={n}: choose \"required\" (ssl.CERT_REQUIRED, the default) or \
             \"none\" (ssl.CERT_NONE)"
        ))),
        Err(_) => Err(PyTypeError::new_err(format!(
            "ssl_cert_reqs must be \"required\", \"none\" or an ssl.VerifyMode, not {}",
            v.get_type().name()?
        ))),
    }
}
