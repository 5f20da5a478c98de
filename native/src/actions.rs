//! The Python `Action` objects of a rows event or a snapshot chunk, made here and not in a
//! Python loop (issue 19: `RowPath._prepared`, which built each `NativeAction` from a tuple,
//! was 14% of a native catch-up's GIL time).
//!
//! Each action is a `cdc.rules.rowpath.NativeAction` (a subclass of the frozen dataclass
//! `cdc.model.Action`) made by `object.__new__`, its `__dict__` filled here with what
//! `_prepared` used to put there, plus three values the pipeline would otherwise compute
//! per action in Python, all from the same fields:
//!
//! * `key`: `Action.key` (index, id, routing; schema and table too for partial updates);
//! * `document`: `Action.document` (index, id);
//! * `bulk_meta`: the action line of its `_bulk` request, the bytes `cdc.es.bulk.encode_bulk`
//!   makes from the fields (tests/unit/test_native_rowpath.py compares them).
//!
//! `Action` reads all three through non-data descriptors, so these dict entries are what
//! it finds; an action made any other way (`dataclasses.replace`, the Python path)
//! computes them from its fields.

use std::fmt::Write;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use crate::json::write_str;
use crate::{Out, INDEX, UPDATE};

/// What the actions of one table's rules share; compiled once per table definition.
#[pyclass(frozen, module = "cdc._native")]
pub struct Maker {
    cls: PyObject,
    object_new: PyObject,
    types: [PyObject; 3],
    /// Per plan: (pipeline for index actions or None, its JSON, versioned).
    plans: Vec<(PyObject, Option<String>, bool)>,
    retry_on_conflict: u32,
    keys: Keys,
}

struct Keys {
    type_: Py<PyString>,
    index: Py<PyString>,
    doc_id: Py<PyString>,
    version: Py<PyString>,
    routing: Py<PyString>,
    schema: Py<PyString>,
    table: Py<PyString>,
    position: Py<PyString>,
    pipeline: Py<PyString>,
    versioned: Py<PyString>,
    doc_json: Py<PyString>,
    doc: Py<PyString>,
    key: Py<PyString>,
    document: Py<PyString>,
    bulk_meta: Py<PyString>,
}

#[pymethods]
impl Maker {
    /// `cls`: NativeAction; `types`: ActionType.INDEX, DELETE, UPDATE (kind codes 0, 1, 2);
    /// `plans`: one (pipeline or None, versioned) per plan, in plan order.
    #[new]
    fn new(
        py: Python<'_>,
        cls: PyObject,
        types: (PyObject, PyObject, PyObject),
        plans: Vec<(Option<String>, bool)>,
        retry_on_conflict: u32,
    ) -> PyResult<Self> {
        let object_new = py.import("builtins")?.getattr("object")?.getattr("__new__")?.unbind();
        let k = |s: &str| PyString::intern(py, s).unbind();
        let plans = plans
            .into_iter()
            .map(|(pipeline, versioned)| {
                let json = pipeline.as_deref().filter(|p| !p.is_empty()).map(|p| {
                    let mut s = String::new();
                    write_str(&mut s, p);
                    s
                });
                let obj = match pipeline {
                    Some(p) => PyString::new(py, &p).into_any().unbind(),
                    None => py.None(),
                };
                (obj, json, versioned)
            })
            .collect();
        Ok(Maker {
            cls,
            object_new,
            types: [types.0, types.1, types.2],
            plans,
            retry_on_conflict,
            keys: Keys {
                type_: k("type"),
                index: k("index"),
                doc_id: k("doc_id"),
                version: k("version"),
                routing: k("routing"),
                schema: k("schema"),
                table: k("table"),
                position: k("position"),
                pipeline: k("pipeline"),
                versioned: k("versioned"),
                doc_json: k("doc_json"),
                doc: k("doc"),
                key: k("key"),
                document: k("document"),
                bulk_meta: k("bulk_meta"),
            },
        })
    }
}

/// `cdc.es.bulk.encode_bulk`'s action line for these fields.
#[allow(clippy::too_many_arguments)]
pub(crate) fn bulk_meta(out: &mut String, kind: u8, index: &str, id: &str, routing: Option<&str>, version: i64,
             versioned: bool, pipeline: Option<&str>, retry_on_conflict: u32) {
    out.clear();
    out.push_str(match kind {
        INDEX => "{\"index\":",
        UPDATE => "{\"update\":",
        _ => "{\"delete\":",
    });
    out.push_str("{\"_index\":");
    write_str(out, index);
    out.push_str(",\"_id\":");
    write_str(out, id);
    // Updates cannot carry an external version (cdc/es/bulk.py says why).
    if versioned && kind != UPDATE {
        let _ = write!(out, ",\"version\":{version},\"version_type\":\"external\"");
    }
    if let Some(r) = routing {
        out.push_str(",\"routing\":");
        write_str(out, r);
    }
    if kind == INDEX {
        if let Some(p) = pipeline {
            out.push_str(",\"pipeline\":");
            out.push_str(p);
        }
    } else if kind == UPDATE {
        let _ = write!(out, ",\"retry_on_conflict\":{retry_on_conflict}");
    }
    out.push_str("}}");
}

/// The actions for `outs`, in order, as `NativeAction` objects.
pub fn make<'py>(
    py: Python<'py>,
    maker: &Maker,
    outs: Vec<Out>,
    schema: &Bound<'py, PyAny>,
    table: &Bound<'py, PyAny>,
    position: &Bound<'py, PyAny>,
    version: i64,
) -> PyResult<Bound<'py, PyList>> {
    let k = &maker.keys;
    let list = PyList::empty(py);
    let versions = [version.into_pyobject(py)?.into_any(), (version - 1).into_pyobject(py)?.into_any()];
    let cls = maker.cls.bind(py);
    let object_new = maker.object_new.bind(py);
    let mut meta = String::with_capacity(160);
    // Most rows of an event go to one index: one Python string for all of them.
    let mut last_index: Option<(String, Bound<'py, PyString>)> = None;
    for a in outs {
        let (pipeline, pipeline_json, versioned) = maker.plans.get(a.plan).ok_or_else(|| {
            pyo3::exceptions::PyValueError::new_err("an action of a plan the maker does not know")
        })?;
        let kind = a.kind.min(2);
        let index = match &last_index {
            Some((text, obj)) if *text == a.index => obj.clone(),
            _ => {
                let obj = PyString::new(py, &a.index);
                last_index = Some((a.index.clone(), obj.clone()));
                obj
            }
        };
        let v = if a.older { version - 1 } else { version };
        bulk_meta(&mut meta, kind, &a.index, &a.id, a.routing.as_deref(), v, *versioned,
                  pipeline_json.as_deref(), maker.retry_on_conflict);
        let doc_id = PyString::new(py, &a.id);
        let routing = match &a.routing {
            Some(r) => PyString::new(py, r).into_any(),
            None => py.None().into_bound(py),
        };
        let d = PyDict::new(py);
        d.set_item(&k.type_, &maker.types[kind as usize])?;
        d.set_item(&k.index, &index)?;
        d.set_item(&k.doc_id, &doc_id)?;
        d.set_item(&k.version, &versions[a.older as usize])?;
        d.set_item(&k.routing, &routing)?;
        d.set_item(&k.schema, schema)?;
        d.set_item(&k.table, table)?;
        d.set_item(&k.position, position)?;
        if kind == INDEX {
            d.set_item(&k.pipeline, pipeline)?;
        } else {
            d.set_item(&k.pipeline, py.None())?;
        }
        d.set_item(&k.versioned, *versioned)?;
        match a.doc.as_deref() {
            Some(doc) => d.set_item(&k.doc_json, PyBytes::new(py, doc))?,
            None => {
                d.set_item(&k.doc_json, py.None())?;
                d.set_item(&k.doc, py.None())?;
            }
        }
        let key = if kind == UPDATE {
            PyTuple::new(py, [index.as_any(), doc_id.as_any(), &routing, schema, table])?
        } else {
            PyTuple::new(py, [index.as_any(), doc_id.as_any(), &routing])?
        };
        let document = PyTuple::new(py, [index.as_any(), doc_id.as_any()])?;
        d.set_item(&k.document, &document)?;
        d.set_item(&k.key, &key)?;
        d.set_item(&k.bulk_meta, PyBytes::new(py, meta.as_bytes()))?;
        let obj = object_new.call1((cls,))?;
        // The dataclass is frozen (its __setattr__ refuses), so the dict is set as
        // object.__setattr__ would: PyObject_GenericSetDict, the stable ABI's way.
        let rc = unsafe { ffi::PyObject_GenericSetDict(obj.as_ptr(), d.as_ptr(), std::ptr::null_mut()) };
        if rc != 0 {
            return Err(PyErr::fetch(py));
        }
        untrack(&[obj.as_any(), d.as_any(), key.as_any(), document.as_any()]);
        list.append(obj)?;
    }
    Ok(list)
}

/// `cdc._native.untrack(*objects)`: `untrack` for the objects Python makes around the actions of
/// a rows event (its `PreparedChange`, that one's dict and action list, the event's
/// `BinlogPosition`, which every action refers to). Only for objects that cannot be part of a
/// reference cycle (the argument at `untrack`); Python itself has no way to say so.
#[pyfunction]
#[pyo3(name = "untrack", signature = (*objects))]
pub fn untrack_objects(objects: &Bound<'_, PyTuple>) {
    for obj in objects.iter() {
        untrack(&[&obj]);
    }
}

/// Takes an action and its parts out of the cyclic garbage collector's lists.
///
/// Actions live from their rows event to their batch's acknowledgement: tens of thousands
/// at once in a catch-up, each an instance, its dict and two tuples the collector would
/// otherwise walk at every collection they survive. That walking was a fifth of a native
/// catch-up's CPU (issue 19: the reader thread, where the allocations trigger collections,
/// used 0.82 s per 100,000 changes with the collector off against 1.35 s with it on,
/// bench by hand). An untracked object is never freed by the collector, only by its
/// reference count, so this is right only for objects that cannot be part of a reference
/// cycle: an action refers to strings, numbers, bytes, tuples of those, its
/// `BinlogPosition` and an `ActionType` member, none of which refers back to an action
/// (what `NativeAction` adds later, its decoded `doc`, is JSON values). msgspec's
/// `Struct(gc=False)` rests on the same argument. A cycle elsewhere that an untracked object
/// refers to is still found: the collector counts that reference as one from outside.
fn untrack(objects: &[&Bound<'_, PyAny>]) {
    for obj in objects {
        // PyObject_GC_UnTrack reads the collector's header in front of the object, which
        // only objects of collected types have; PyObject_GC_IsTracked checks that first
        // (CPython gcmodule.c), so anything else passed in is left alone.
        unsafe {
            if ffi::PyObject_GC_IsTracked(obj.as_ptr()) != 0 {
                ffi::PyObject_GC_UnTrack(obj.as_ptr().cast());
            }
        }
    }
}

/// The `_bulk` bodies of `outs` (what `cdc.es.bulk.encode_bulk` makes of their actions), each
/// with its number of actions and their weight as `cdc.stream.delivery.action_weight` counts it:
/// parts of at most `max_actions` actions and `max_bytes` of weight, split as
/// `cdc.stream.delivery.chunks` splits actions (an action that alone weighs more is a part of
/// its own), one bulk request each. Always at least one part (empty when `outs` is). Needs no
/// Python object: runs with the GIL released.
pub(crate) fn encode_bodies(maker: &MakerPlans, outs: &[Out], version: i64, max_actions: usize, max_bytes: usize)
    -> Vec<(Vec<u8>, usize, usize)> {
    let mut parts = Vec::new();
    let mut body = Vec::with_capacity(outs.len().min(max_actions) * 320);
    let mut meta = String::with_capacity(160);
    let mut weight = 0;
    let mut count = 0;
    for a in outs {
        let w = 100 + a.doc.as_ref().map_or(0, |d| d.len());
        if count > 0 && (count >= max_actions || weight + w > max_bytes) {
            let next = Vec::with_capacity(body.capacity());
            parts.push((std::mem::replace(&mut body, next), count, weight));
            weight = 0;
            count = 0;
        }
        count += 1;
        let (pipeline_json, versioned) = &maker.plans[a.plan.min(maker.plans.len() - 1)];
        let kind = a.kind.min(2);
        let v = if a.older { version - 1 } else { version };
        bulk_meta(&mut meta, kind, &a.index, &a.id, a.routing.as_deref(), v, *versioned, pipeline_json.as_deref(),
                  maker.retry_on_conflict);
        body.extend_from_slice(meta.as_bytes());
        body.push(b'\n');
        let doc: &[u8] = a.doc.as_deref().unwrap_or(b"null");
        if kind == INDEX {
            body.extend_from_slice(doc);
            body.push(b'\n');
        } else if kind == UPDATE {
            body.extend_from_slice(b"{\"doc\":");
            body.extend_from_slice(doc);
            body.extend_from_slice(b",\"doc_as_upsert\":true}\n");
        }
        weight += w;
    }
    parts.push((body, count, weight));
    parts
}

/// What `encode_bodies` needs of a `Maker`, without the Python objects (sent across `allow_threads`).
pub(crate) struct MakerPlans {
    plans: Vec<(Option<String>, bool)>,
    retry_on_conflict: u32,
}

impl Maker {
    pub(crate) fn plans(&self) -> MakerPlans {
        MakerPlans {
            plans: self.plans.iter().map(|(_, json, versioned)| (json.clone(), *versioned)).collect(),
            retry_on_conflict: self.retry_on_conflict,
        }
    }
}
