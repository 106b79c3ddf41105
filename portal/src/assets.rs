//! The portal's static files, built into the binary: its stylesheet and the vendored htmx
//! (`assets/README.md` names the versions).

/// The file served at `/assets/{name}`, with its content type.
pub fn get(name: &str) -> Option<(&'static str, &'static [u8])> {
    Some(match name {
        "portal.css" => (
            "text/css; charset=utf-8",
            include_bytes!("../assets/portal.css"),
        ),
        "htmx.min.js" => (
            "text/javascript; charset=utf-8",
            include_bytes!("../assets/htmx.min.js"),
        ),
        "sse.js" => (
            "text/javascript; charset=utf-8",
            include_bytes!("../assets/sse.js"),
        ),
        _ => return None,
    })
}
