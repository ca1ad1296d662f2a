//! Randomness from the runtime's CSPRNG (Web Crypto), for tokens, sessions, tickets and ids.

use worker::{
    js_sys::{global, Function, Reflect, Uint8Array},
    wasm_bindgen::{JsCast, JsValue},
};

fn crypto() -> worker::Result<JsValue> {
    Ok(Reflect::get(&global(), &"crypto".into())?)
}

/// `n` random bytes (`crypto.getRandomValues`).
pub fn random_bytes(n: usize) -> worker::Result<Vec<u8>> {
    let crypto = crypto()?;
    let fill: Function = Reflect::get(&crypto, &"getRandomValues".into())?.dyn_into()?;
    let buffer = Uint8Array::new_with_length(n as u32);
    fill.call1(&crypto, &buffer)?;
    Ok(buffer.to_vec())
}

/// A random UUID (`crypto.randomUUID()`).
pub fn random_id() -> worker::Result<String> {
    let crypto = crypto()?;
    let random_uuid: Function = Reflect::get(&crypto, &"randomUUID".into())?.dyn_into()?;
    random_uuid
        .call0(&crypto)?
        .as_string()
        .ok_or_else(|| worker::Error::RustError("crypto.randomUUID returned no string".into()))
}
