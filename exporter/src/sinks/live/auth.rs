//! The live view's bearer token: read from `--ui-token-file`, or made up at start and written
//! to a 0600 file; checked in constant time on the WebSocket (as a subprotocol, the way the
//! apiserver takes a browser's token) and on the HTTP API (`Authorization: Bearer`).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The subprotocol the client speaks (and the server answers).
pub const PROTOCOL: &str = "apiscope.v1";
/// The subprotocol prefix that carries the token, base64url without padding.
pub const TOKEN_PROTOCOL_PREFIX: &str = "base64url.bearer.apiscope.";

pub struct Token(Vec<u8>);

impl Token {
    pub fn new(secret: impl Into<Vec<u8>>) -> Result<Token> {
        let secret = secret.into();
        if secret.len() < 16 {
            bail!("the live view token must be at least 16 bytes");
        }
        Ok(Token(secret))
    }

    /// `--ui-token-file`: the file's contents without the trailing newline.
    pub fn from_file(path: &Path) -> Result<Token> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the live view token {}", path.display()))?;
        Token::new(text.trim_end_matches(['\n', '\r']).as_bytes().to_vec())
            .with_context(|| path.display().to_string())
    }

    /// 32 random bytes, base64url: printable, safe in a URL fragment and a subprotocol.
    pub fn generate() -> Result<Token> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("random token: {e}"))?;
        Token::new(URL_SAFE_NO_PAD.encode(bytes).into_bytes())
    }

    /// The token as text (for the printed URL and the token file).
    pub fn as_text(&self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }

    /// Constant time in the candidate's contents (the length is not secret).
    pub fn matches(&self, candidate: &[u8]) -> bool {
        if candidate.len() != self.0.len() {
            return false;
        }
        let difference = self
            .0
            .iter()
            .zip(candidate)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(difference) == 0
    }

    /// `Authorization: Bearer <token>`.
    pub fn accepts_authorization(&self, header: Option<&[u8]>) -> bool {
        header
            .and_then(|value| value.strip_prefix(b"Bearer "))
            .is_some_and(|candidate| self.matches(candidate))
    }

    /// The `Sec-WebSocket-Protocol` values offered (each header may list several).
    pub fn accepts_subprotocols<'a>(&self, offered: impl Iterator<Item = &'a [u8]>) -> bool {
        let mut accepted = false;
        for header in offered {
            for protocol in header.split(|b| *b == b',') {
                let protocol = protocol.trim_ascii();
                if let Some(encoded) = protocol.strip_prefix(TOKEN_PROTOCOL_PREFIX.as_bytes()) {
                    if let Ok(candidate) = URL_SAFE_NO_PAD.decode(encoded) {
                        // No early exit: every offered token costs the same.
                        accepted |= self.matches(&candidate);
                    }
                }
            }
        }
        accepted
    }

    /// Writes the token to `dir/ui-token`, readable by the owner only, and returns the path.
    pub fn write_private(&self, dir: &Path) -> Result<PathBuf> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join("ui-token");
        // A token left by an earlier run is replaced, never appended to or reused.
        let _ = std::fs::remove_file(&path);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        writeln!(file, "{}", self.as_text())?;
        Ok(path)
    }
}

/// Where a generated token goes: `$XDG_RUNTIME_DIR/apiscope`, else `/run/apiscope` for root,
/// else the temporary directory.
pub fn runtime_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("apiscope");
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return PathBuf::from("/run/apiscope");
    }
    std::env::temp_dir().join(format!("apiscope-{}", unsafe { libc::geteuid() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_by_content_and_length() {
        let token = Token::new(b"0123456789abcdef".to_vec()).unwrap();
        assert!(token.matches(b"0123456789abcdef"));
        assert!(!token.matches(b"0123456789abcdeX"));
        assert!(!token.matches(b"0123456789abcde"));
        assert!(token.accepts_authorization(Some(b"Bearer 0123456789abcdef")));
        assert!(!token.accepts_authorization(Some(b"Basic 0123456789abcdef")));
        assert!(!token.accepts_authorization(None));
        assert!(Token::new(b"short".to_vec()).is_err());
    }

    #[test]
    fn the_subprotocol_carries_the_token_base64url() {
        let token = Token::generate().unwrap();
        let offered = format!(
            "{PROTOCOL}, {TOKEN_PROTOCOL_PREFIX}{}",
            URL_SAFE_NO_PAD.encode(token.as_text())
        );
        assert!(token.accepts_subprotocols([offered.as_bytes()].into_iter()));
        assert!(!token.accepts_subprotocols([PROTOCOL.as_bytes()].into_iter()));
        let wrong = format!("{PROTOCOL}, {TOKEN_PROTOCOL_PREFIX}d3Jvbmc");
        assert!(!token.accepts_subprotocols([wrong.as_bytes()].into_iter()));
    }

    #[test]
    fn the_token_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let token = Token::generate().unwrap();
        let path = token.write_private(dir.path()).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(
            Token::from_file(&path)
                .unwrap()
                .matches(token.as_text().as_bytes())
        );
    }
}
