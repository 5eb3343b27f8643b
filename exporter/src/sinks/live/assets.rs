//! The UI, embedded at build time (see `build.rs`): looked up by exact name in a table, never on
//! the filesystem, so no request path can reach outside it.

include!(concat!(env!("OUT_DIR"), "/ui_assets.rs"));

/// Served at `/` when the binary was built without `ui/dist`.
const NOT_BUILT: &str = "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>apiscope live view</title></head>\n<body><h1>apiscope live view: the UI was not built</h1>\n<p>This binary was built without <code>ui/dist</code>. Build the UI with <code>make ui</code>\n(npm), then rebuild apiscope (<code>make build</code>). The WebSocket API at\n<code>/api/v1/stream</code> works without it (see docs/live-view.md).</p></body></html>\n";

pub struct Asset {
    pub bytes: &'static [u8],
    pub content_type: &'static str,
    /// Vite puts a content hash in every name under `assets/`: those never change.
    pub immutable: bool,
}

/// The asset for a request path (`/` is `index.html`).
pub fn lookup(path: &str) -> Option<Asset> {
    let name = path.strip_prefix('/')?;
    let name = if name.is_empty() { "index.html" } else { name };
    if name
        .split('/')
        .any(|part| part == ".." || part == "." || part.is_empty())
    {
        return None;
    }
    if !UI_BUILT {
        return (name == "index.html").then_some(Asset {
            bytes: NOT_BUILT.as_bytes(),
            content_type: "text/html; charset=utf-8",
            immutable: false,
        });
    }
    let (_, bytes) = UI_ASSETS.iter().find(|(n, _)| *n == name)?;
    Some(Asset {
        bytes,
        content_type: content_type(name),
        immutable: name.starts_with("assets/"),
    })
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json" | "map") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        Some("woff") => "font/woff",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_is_always_there_and_nothing_escapes() {
        let index = lookup("/").expect("an index, built or not");
        assert_eq!(index.content_type, "text/html; charset=utf-8");
        assert!(!index.immutable);
        for path in [
            "/../Cargo.toml",
            "/assets/../../etc/passwd",
            "//etc/passwd",
            "/./index.html",
            "etc",
        ] {
            assert!(lookup(path).is_none(), "{path}");
        }
        assert_eq!(
            content_type("assets/index-abc.js"),
            "text/javascript; charset=utf-8"
        );
    }
}
