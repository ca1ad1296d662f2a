//! Starting the user's container with the environment the agent needs.
//!
//! Why this exists: in worker 0.8.7, `ContainerStartupOptions::add_env` keeps the variables in a
//! `js_sys::Map` that the runtime does not read, so the container starts without them (the API
//! key never arrives). Calling the container's JS `start` with a plain object
//! `{ env: {...}, enableInternet }` works. Remove this once the upstream conversion is fixed.

use worker::{
    js_sys::{Function, Object, Reflect},
    wasm_bindgen::{JsCast, JsValue},
    Container,
};

/// Starts `container` with `env` and, when `internet` is true, outbound internet access.
///
/// # Errors
/// The runtime refused the start (the values themselves are never part of the error).
pub fn start_with_env(container: &Container, env: &[(String, String)], internet: bool) -> worker::Result<()> {
    let variables = Object::new();
    for (name, value) in env {
        Reflect::set(&variables, &JsValue::from_str(name), &JsValue::from_str(value))?;
    }
    let options = Object::new();
    Reflect::set(&options, &JsValue::from_str("env"), &variables)?;
    Reflect::set(&options, &JsValue::from_str("enableInternet"), &JsValue::from_bool(internet))?;
    let target: &JsValue = container.as_ref();
    let start: Function = Reflect::get(target, &JsValue::from_str("start"))?.dyn_into()?;
    start.call1(target, &options)?;
    Ok(())
}

/// A second handle to the same container: `Container` is not `Clone` in worker 0.8.7, and the
/// exit watch needs its own while the start keeps one.
pub fn another_handle(container: &Container) -> Container {
    container.as_ref().clone().unchecked_into()
}
