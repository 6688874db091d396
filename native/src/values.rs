//! Values crossing the boundary: `(type, int)` for integers, `(type, bytes)`
//! (little-endian image) for floats and vectors.

use cranelift_codegen::data_value::DataValue;
use cranelift_codegen::ir::types::{self, Type};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

/// Parses a CLIF type name such as `i64`, `f32` or `i16x8`.
pub fn parse_type(name: &str) -> Option<Type> {
    let scalar = |s: &str| match s {
        "i8" => Some(types::I8),
        "i16" => Some(types::I16),
        "i32" => Some(types::I32),
        "i64" => Some(types::I64),
        "i128" => Some(types::I128),
        #[cfg(not(cranelift_no_f16))]
        "f16" => Some(types::F16),
        "f32" => Some(types::F32),
        "f64" => Some(types::F64),
        #[cfg(not(cranelift_no_f16))]
        "f128" => Some(types::F128),
        _ => None,
    };
    match name.split_once('x') {
        Some((lane, lanes)) => scalar(lane)?.by(lanes.parse().ok()?),
        None => scalar(name),
    }
}

pub fn from_py(ty: &str, value: &Bound<'_, PyAny>) -> PyResult<DataValue> {
    let t = parse_type(ty).ok_or_else(|| PyValueError::new_err(format!("unknown type {ty}")))?;
    if t.is_int() && !t.is_vector() {
        let v: i128 = if t == types::I128 {
            // Accept both signed and unsigned 128-bit Python ints.
            match value.extract::<i128>() {
                Ok(v) => v,
                Err(_) => value.extract::<u128>()? as i128,
            }
        } else {
            let v: i128 = value.extract()?;
            // Wrap to the type's width, so unsigned spellings are accepted too.
            let bits = t.bits();
            let v = v & ((1i128 << bits) - 1);
            if v >> (bits - 1) & 1 == 1 {
                v - (1i128 << bits)
            } else {
                v
            }
        };
        return DataValue::from_integer(v, t).map_err(|e| PyValueError::new_err(e.to_string()));
    }
    let bytes: Vec<u8> = value.extract()?;
    if bytes.len() != t.bytes() as usize {
        return Err(PyValueError::new_err(format!(
            "{ty} needs {} bytes, got {}",
            t.bytes(),
            bytes.len()
        )));
    }
    Ok(DataValue::read_from_slice_le(&bytes, t))
}

pub fn to_py<'py>(py: Python<'py>, v: &DataValue) -> PyResult<Bound<'py, PyAny>> {
    let ty = v.ty().to_string();
    let value: Bound<'py, PyAny> = match v {
        DataValue::I8(i) => i.into_pyobject(py)?.into_any(),
        DataValue::I16(i) => i.into_pyobject(py)?.into_any(),
        DataValue::I32(i) => i.into_pyobject(py)?.into_any(),
        DataValue::I64(i) => i.into_pyobject(py)?.into_any(),
        DataValue::I128(i) => i.into_pyobject(py)?.into_any(),
        other => {
            let mut buf = vec![0u8; other.ty().bytes() as usize];
            other.write_to_slice_le(&mut buf);
            PyBytes::new(py, &buf).into_any()
        }
    };
    Ok((ty, value).into_pyobject(py)?.into_any())
}

pub fn list_to_py<'py>(py: Python<'py>, vals: &[DataValue]) -> PyResult<Bound<'py, PyList>> {
    let list = PyList::empty(py);
    for v in vals {
        list.append(to_py(py, v)?)?;
    }
    Ok(list)
}
