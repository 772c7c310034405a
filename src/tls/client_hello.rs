//! A small, bounds-checked parser for the TLS ClientHello at the start of a TCP connection.
//!
//! The gateway uses it to choose a TLS filter chain by SNI before it terminates or passes
//! through TLS, and to check that a CONNECT tunnel's SNI equals the CONNECT host. The input
//! is attacker-controlled, so every read is bounds-checked, nothing panics, and nothing is
//! copied except the strings that are returned. The handshake message is read in place
//! across however many records it was split into, so reassembly needs no buffer either.

use tokio::io::{AsyncRead, AsyncReadExt};

/// What the gateway needs from a ClientHello.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientHello {
    /// server_name (host_name type) lower-cased, if the client sent one.
    pub server_name: Option<String>,
    /// ALPN protocol names offered, in order (e.g. ["h2", "http/1.1"]).
    pub alpn: Vec<String>,
}

/// The result of [`parse`] on the bytes received so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parse {
    /// Parsed. The ClientHello's last record ends on a record boundary (RFC 8446 §5.1), and
    /// [`peek_client_hello`] stops reading exactly there, so its `buf.len()` is how many
    /// bytes the ClientHello record(s) occupied.
    Complete(ClientHello),
    /// Need at least this many bytes in total (input so far is a valid prefix as far as
    /// record and handshake framing go). Always greater than the input length and never
    /// more than the ClientHello records occupy, so reading up to it never over-reads.
    Incomplete { needed: usize },
    /// Not a TLS ClientHello (e.g. plain HTTP, or malformed). Carries a short reason for logs.
    NotTls(&'static str),
}

/// Largest ClientHello we will buffer before giving up (several records allowed).
///
/// Real ClientHellos are 0.2–2 KB; one with a post-quantum key share (X25519MLKEM768 adds
/// 1216 bytes) is ~1.8 KB, and two hybrid shares plus GREASE/ECH padding stay under 4 KB.
/// 64 KiB covers that with room for a full 16 KiB record or for pathological framing (a
/// ~10 KB hello in 1-byte records is ~60 KB), while bounding per-connection memory.
pub const MAX_CLIENT_HELLO: usize = 64 * 1024;

/// TLS record header: content type, legacy version, length.
const RECORD_HEADER: usize = 5;
/// Handshake header: msg_type, 24-bit length.
const HANDSHAKE_HEADER: usize = 4;
/// Content type of handshake records.
const CONTENT_HANDSHAKE: u8 = 22;
/// Handshake type of ClientHello.
const CLIENT_HELLO: u8 = 1;
/// Plaintext records are at most 2^14 bytes; accept TLS 1.2's largest record expansion
/// (2^14 + 2048) as slack so that an odd but harmless client is not misclassified.
const MAX_RECORD: usize = (1 << 14) + 2048;
/// Smallest possible ClientHello body: version, random, empty session_id, one cipher suite,
/// one compression method, no extensions. Used as a lower bound before the length is known.
const MIN_BODY: usize = 2 + 32 + 1 + (2 + 2) + (1 + 1);
/// Extension types we extract.
const EXT_SERVER_NAME: u16 = 0;
const EXT_ALPN: u16 = 16;
/// server_name entry type for a DNS host name.
const NAME_TYPE_HOST_NAME: u8 = 0;
/// Longest host name we accept (DNS names are at most 253 characters plus a trailing dot).
const MAX_HOST_NAME: usize = 255;

/// Parses the ClientHello at the start of `buf`, which holds the bytes received so far.
///
/// Handles a handshake message fragmented over several handshake records (down to 1-byte
/// records) without copying it; bytes after the ClientHello's last record are ignored.
pub fn parse(buf: &[u8]) -> Parse {
    match frame(buf) {
        Framing::Complete { message_len } => {
            let mut reader = Reader {
                buf,
                pos: 0,
                record_left: 0,
                left: message_len,
            };
            match reader
                .skip(HANDSHAKE_HEADER)
                .and_then(|()| parse_body(&mut reader))
            {
                Ok(hello) => Parse::Complete(hello),
                Err(reason) => Parse::NotTls(reason),
            }
        }
        // `needed` is always past the input; the `max` only guards the peek loop's progress.
        Framing::Incomplete(needed) => Parse::Incomplete {
            needed: needed.max(buf.len().saturating_add(1)),
        },
        Framing::Bad(reason) => Parse::NotTls(reason),
    }
}

/// Reads a ClientHello from `reader`, appending the bytes to `buf` so the caller can replay
/// them into the real TLS stream afterwards.
///
/// Reads only as many bytes as [`parse`] says are still needed, so nothing after the
/// ClientHello records is consumed. Returns `NotTls("eof")` if the stream ends first, and
/// `Incomplete { needed }` with `needed > limit` (without reading further) if the ClientHello
/// would not fit in `limit` bytes. Cancel safe: if the future is dropped (e.g. by the
/// caller's timeout), `buf` holds exactly the bytes read so far. Timeouts are the caller's job.
pub async fn peek_client_hello<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    limit: usize,
) -> std::io::Result<Parse> {
    loop {
        let needed = match parse(buf) {
            Parse::Incomplete { needed } => needed,
            done => return Ok(done),
        };
        if needed > limit {
            return Ok(Parse::Incomplete { needed });
        }
        let want = (needed - buf.len()) as u64;
        // `read_buf` only appends what was actually read, and `take` stops it at `needed`.
        if (&mut *reader).take(want).read_buf(buf).await? == 0 {
            return Ok(Parse::NotTls("eof"));
        }
    }
}

/// Outcome of walking the record layer.
enum Framing {
    /// The whole handshake message (header included, `message_len` bytes) is in `buf`.
    Complete { message_len: usize },
    /// Need at least this many bytes in total.
    Incomplete(usize),
    /// Not a TLS ClientHello.
    Bad(&'static str),
}

/// Walks handshake records until they cover the ClientHello message, validating headers.
///
/// Only looks at record headers and the 4-byte handshake header; the body is parsed later.
fn frame(buf: &[u8]) -> Framing {
    let mut pos = 0; // start of the next record header
    let mut payload = 0; // handshake bytes declared by the records walked so far
    let mut hs_header = [0u8; HANDSHAKE_HEADER];
    let mut hs_header_len = 0;
    let mut message_len: Option<usize> = None;
    loop {
        let header = buf.get(pos..).unwrap_or_default();
        let header = header.get(..RECORD_HEADER).unwrap_or(header);
        if let Some(&content_type) = header.first() {
            if content_type != CONTENT_HANDSHAKE {
                return Framing::Bad(if pos == 0 {
                    "not a TLS handshake record"
                } else {
                    "non-handshake record inside ClientHello"
                });
            }
        }
        if let Some(&major) = header.get(1) {
            if major != 3 {
                return Framing::Bad("unsupported record version");
            }
        }
        // Bytes of the message we still expect; a lower bound until its length is known.
        let want = message_len.unwrap_or(HANDSHAKE_HEADER + MIN_BODY);
        let &[_, _, _, hi, lo] = header else {
            // Partial header: this record and its (non-empty) payload are still to come.
            let rest = want.saturating_sub(payload).max(1);
            return Framing::Incomplete(pos + RECORD_HEADER + rest);
        };
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        if len == 0 {
            return Framing::Bad("empty handshake record");
        }
        if len > MAX_RECORD {
            return Framing::Bad("record too long");
        }
        let start = pos + RECORD_HEADER;
        let end = start + len;
        let available = buf.get(start..end.min(buf.len())).unwrap_or_default();
        for (slot, &byte) in hs_header
            .iter_mut()
            .skip(hs_header_len)
            .zip(available.iter())
        {
            *slot = byte;
            hs_header_len += 1;
        }
        if hs_header_len >= 1 && hs_header[0] != CLIENT_HELLO {
            return Framing::Bad("not a ClientHello");
        }
        if hs_header_len == HANDSHAKE_HEADER && message_len.is_none() {
            let body = usize::from(hs_header[1]) << 16
                | usize::from(hs_header[2]) << 8
                | usize::from(hs_header[3]);
            if body < MIN_BODY {
                return Framing::Bad("ClientHello too short");
            }
            message_len = Some(HANDSHAKE_HEADER + body);
        }
        payload += len;
        if let Some(total) = message_len {
            if payload > total {
                // RFC 8446 §5.1: a ClientHello must end on a record boundary.
                return Framing::Bad("data after ClientHello in its record");
            }
            if payload == total {
                return if end > buf.len() {
                    Framing::Incomplete(end)
                } else {
                    Framing::Complete { message_len: total }
                };
            }
        }
        if end > buf.len() {
            let want = message_len.unwrap_or(HANDSHAKE_HEADER + MIN_BODY);
            return Framing::Incomplete(if payload < want {
                // The message outlives this record: at least one more record follows.
                end + RECORD_HEADER + (want - payload)
            } else {
                end
            });
        }
        pos = end;
    }
}

/// Parses the ClientHello body (after the handshake header) up to the end of the message.
fn parse_body(r: &mut Reader<'_>) -> Result<ClientHello, &'static str> {
    if r.u16()? >> 8 != 3 {
        return Err("unsupported ClientHello version");
    }
    r.skip(32)?; // random
    let session_id = usize::from(r.u8()?);
    if session_id > 32 {
        return Err("session_id too long");
    }
    r.skip(session_id)?;
    let cipher_suites = usize::from(r.u16()?);
    if cipher_suites < 2 || cipher_suites % 2 != 0 {
        return Err("bad cipher_suites length");
    }
    r.skip(cipher_suites)?;
    let compression = usize::from(r.u8()?);
    if compression == 0 {
        return Err("no compression methods");
    }
    r.skip(compression)?;

    let mut hello = ClientHello::default();
    if r.left == 0 {
        return Ok(hello); // extensions are optional
    }
    if usize::from(r.u16()?) != r.left {
        return Err("extensions length mismatch");
    }
    // One bit per extension type: 8 KiB on the stack, O(1) duplicate check, no allocation.
    let mut seen = [0u64; 1024];
    while r.left > 0 {
        let ext_type = r.u16()?;
        let len = usize::from(r.u16()?);
        let mut data = r.sub(len)?;
        let word = &mut seen[usize::from(ext_type >> 6)];
        let bit = 1u64 << (ext_type & 63);
        if *word & bit != 0 {
            // RFC 8446 §4.2: at most one extension of each type.
            return Err("duplicate extension");
        }
        *word |= bit;
        match ext_type {
            EXT_SERVER_NAME => hello.server_name = parse_server_name(&mut data)?,
            EXT_ALPN => hello.alpn = parse_alpn(&mut data)?,
            _ => {}
        }
    }
    Ok(hello)
}

/// RFC 6066 §3: takes the first host_name entry; other name types are skipped.
fn parse_server_name(r: &mut Reader<'_>) -> Result<Option<String>, &'static str> {
    let list_len = usize::from(r.u16()?);
    if list_len == 0 || list_len != r.left {
        return Err("bad server_name list length");
    }
    let mut host = None;
    while r.left > 0 {
        let name_type = r.u8()?;
        let len = usize::from(r.u16()?);
        let mut name = r.sub(len)?;
        if name_type == NAME_TYPE_HOST_NAME && host.is_none() {
            host = Some(host_name(&mut name)?);
        }
    }
    Ok(host)
}

/// Validates and normalises a host name: 1..=255 bytes of printable ASCII (no NUL, controls
/// or spaces, which no DNS name has and which would only smuggle junk into logs), one
/// trailing dot stripped, lower-cased so it compares directly with configured hosts.
fn host_name(r: &mut Reader<'_>) -> Result<String, &'static str> {
    if r.left == 0 || r.left > MAX_HOST_NAME {
        return Err("bad server_name length");
    }
    let mut name = String::with_capacity(r.left);
    while r.left > 0 {
        for &byte in r.chunk(r.left)? {
            if !byte.is_ascii_graphic() {
                return Err("server_name not printable ASCII");
            }
            name.push(char::from(byte.to_ascii_lowercase()));
        }
    }
    if name.ends_with('.') {
        name.pop();
    }
    if name.is_empty() {
        return Err("empty server_name");
    }
    Ok(name)
}

/// RFC 7301 §3.1: a non-empty list of non-empty protocol names. Names are opaque bytes;
/// a non-UTF-8 one is kept (lossily) so the list keeps its length and order.
fn parse_alpn(r: &mut Reader<'_>) -> Result<Vec<String>, &'static str> {
    let list_len = usize::from(r.u16()?);
    if list_len == 0 || list_len != r.left {
        return Err("bad ALPN list length");
    }
    let mut names = Vec::new();
    while r.left > 0 {
        let len = usize::from(r.u8()?);
        if len == 0 {
            return Err("empty ALPN protocol name");
        }
        let mut name = r.sub(len)?;
        let mut bytes = Vec::with_capacity(len);
        while name.left > 0 {
            bytes.extend_from_slice(name.chunk(name.left)?);
        }
        names.push(match String::from_utf8(bytes) {
            Ok(name) => name,
            Err(err) => String::from_utf8_lossy(err.as_bytes()).into_owned(),
        });
    }
    Ok(names)
}

/// A cursor over the handshake message as it lies in `buf`, stepping over record headers.
///
/// `left` bounds the current (sub-)structure, so a length field can never reach past its
/// enclosing vector. Record headers were validated by [`frame`]; reads are still checked.
#[derive(Clone, Copy)]
struct Reader<'a> {
    buf: &'a [u8],
    /// Index in `buf` of the next payload byte (or of the next record header).
    pos: usize,
    /// Payload bytes left in the current record.
    record_left: usize,
    /// Bytes left in the current structure.
    left: usize,
}

impl<'a> Reader<'a> {
    /// Returns the next 1..=`max` contiguous bytes (`max` must be non-zero).
    fn chunk(&mut self, max: usize) -> Result<&'a [u8], &'static str> {
        if max == 0 || self.left == 0 {
            return Err("length field exceeds its vector");
        }
        while self.record_left == 0 {
            let Some(&[_, _, _, hi, lo]) = self.buf.get(self.pos..self.pos + RECORD_HEADER) else {
                return Err("truncated ClientHello");
            };
            self.record_left = usize::from(u16::from_be_bytes([hi, lo]));
            self.pos += RECORD_HEADER;
        }
        let n = max.min(self.record_left).min(self.left);
        let bytes = self
            .buf
            .get(self.pos..self.pos + n)
            .ok_or("truncated ClientHello")?;
        self.pos += n;
        self.record_left -= n;
        self.left -= n;
        Ok(bytes)
    }

    fn skip(&mut self, mut n: usize) -> Result<(), &'static str> {
        if n > self.left {
            return Err("length field exceeds its vector");
        }
        while n > 0 {
            n -= self.chunk(n)?.len();
        }
        Ok(())
    }

    fn u8(&mut self) -> Result<u8, &'static str> {
        self.chunk(1)?
            .first()
            .copied()
            .ok_or("truncated ClientHello")
    }

    fn u16(&mut self) -> Result<u16, &'static str> {
        Ok(u16::from_be_bytes([self.u8()?, self.u8()?]))
    }

    /// Splits off the next `n` bytes as their own bounded reader and steps over them.
    fn sub(&mut self, n: usize) -> Result<Reader<'a>, &'static str> {
        let mut sub = *self;
        sub.left = n;
        self.skip(n)?;
        Ok(sub)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::ssl::{HandshakeError, SslConnector, SslMethod, SslVersion};
    use std::io::{self, Read, Write};
    use tokio::io::AsyncWriteExt;

    /// A transport that records what the client writes and never has anything to read, so
    /// the handshake stops right after the ClientHello.
    #[derive(Debug, Default)]
    struct Capture(Vec<u8>);

    impl Read for Capture {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::ErrorKind::WouldBlock.into())
        }
    }

    impl Write for Capture {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            self.0.extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// The ClientHello OpenSSL sends, as record-layer bytes.
    fn openssl_hello(sni: Option<&str>, alpn: &[u8], max_version: Option<SslVersion>) -> Vec<u8> {
        let mut builder = SslConnector::builder(SslMethod::tls_client()).unwrap();
        builder.set_alpn_protos(alpn).unwrap();
        builder.set_max_proto_version(max_version).unwrap();
        let config = builder.build().configure().unwrap();
        let ssl = match sni {
            Some(host) => config.into_ssl(host).unwrap(),
            None => config
                .use_server_name_indication(false)
                .verify_hostname(false)
                .into_ssl("unused")
                .unwrap(),
        };
        match ssl.connect(Capture::default()) {
            Err(HandshakeError::WouldBlock(mid)) => mid.get_ref().0.clone(),
            Err(e) => panic!("unexpected handshake error: {e}"),
            Ok(_) => panic!("handshake cannot complete without a server"),
        }
    }

    fn default_hello() -> Vec<u8> {
        openssl_hello(Some("api.example.com"), b"\x02h2\x08http/1.1", None)
    }

    /// Concatenates the payloads of well-formed records.
    fn deframe(mut records: &[u8]) -> Vec<u8> {
        let mut message = Vec::new();
        while !records.is_empty() {
            let len = usize::from(u16::from_be_bytes([records[3], records[4]]));
            message.extend_from_slice(&records[5..5 + len]);
            records = &records[5 + len..];
        }
        message
    }

    /// Frames a handshake message into records of at most `size` payload bytes.
    fn reframe(message: &[u8], size: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for part in message.chunks(size) {
            out.extend_from_slice(&[22, 3, 1]);
            out.extend_from_slice(&(part.len() as u16).to_be_bytes());
            out.extend_from_slice(part);
        }
        out
    }

    fn with_u16_len(data: &[u8]) -> Vec<u8> {
        let mut out = (data.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(data);
        out
    }

    fn extension(ext_type: u16, data: &[u8]) -> Vec<u8> {
        let mut out = ext_type.to_be_bytes().to_vec();
        out.extend(with_u16_len(data));
        out
    }

    fn sni_extension(name: &[u8]) -> Vec<u8> {
        let mut entry = vec![0];
        entry.extend(with_u16_len(name));
        extension(0, &with_u16_len(&entry))
    }

    /// A minimal ClientHello handshake message; `extensions: None` omits the block entirely.
    fn handcrafted(extensions: Option<&[u8]>) -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend_from_slice(&[0x42; 32]);
        body.push(0); // session_id
        body.extend_from_slice(&[0, 2, 0x13, 0x01]); // TLS_AES_128_GCM_SHA256
        body.extend_from_slice(&[1, 0]); // null compression
        if let Some(ext) = extensions {
            body.extend(with_u16_len(ext));
        }
        let mut message = vec![1];
        message.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        message.extend(body);
        message
    }

    fn complete(buf: &[u8]) -> ClientHello {
        match parse(buf) {
            Parse::Complete(hello) => hello,
            other => panic!("expected Complete, got {other:?}"),
        }
    }

    fn h2_and_http11() -> Vec<String> {
        vec!["h2".to_string(), "http/1.1".to_string()]
    }

    #[test]
    fn real_openssl_hello_sni_and_alpn() {
        let records = default_hello();
        let hello = complete(&records);
        assert_eq!(hello.server_name.as_deref(), Some("api.example.com"));
        assert_eq!(hello.alpn, h2_and_http11());
        // Trailing bytes after the records (e.g. early application data) are ignored.
        let mut more = records.clone();
        more.extend_from_slice(b"\x17\x03\x03\x00\x01x");
        assert_eq!(complete(&more), hello);
    }

    #[test]
    fn real_openssl_tls12_hello() {
        let records = openssl_hello(
            Some("legacy.example"),
            b"\x08http/1.1",
            Some(SslVersion::TLS1_2),
        );
        let hello = complete(&records);
        assert_eq!(hello.server_name.as_deref(), Some("legacy.example"));
        assert_eq!(hello.alpn, vec!["http/1.1".to_string()]);
    }

    #[test]
    fn real_openssl_hello_without_sni() {
        let hello = complete(&openssl_hello(None, b"\x02h2", None));
        assert_eq!(hello.server_name, None);
        assert_eq!(hello.alpn, vec!["h2".to_string()]);
    }

    #[test]
    fn upper_case_sni_lower_cased_and_trailing_dot_stripped() {
        let mut ext = sni_extension(b"WWW.Example.COM.");
        ext.extend(extension(16, &with_u16_len(b"\x02h2\x08http/1.1")));
        let hello = complete(&reframe(&handcrafted(Some(&ext)), 1 << 14));
        assert_eq!(hello.server_name.as_deref(), Some("www.example.com"));
        assert_eq!(hello.alpn, h2_and_http11());
    }

    #[test]
    fn hello_without_extensions() {
        let records = reframe(&handcrafted(None), 1 << 14);
        assert_eq!(complete(&records), ClientHello::default());
        let records = reframe(&handcrafted(Some(&[])), 1 << 14);
        assert_eq!(complete(&records), ClientHello::default());
    }

    #[test]
    fn first_host_name_entry_wins_and_other_types_are_skipped() {
        let mut list = vec![7];
        list.extend(with_u16_len(b"opaque"));
        for name in [&b"first.example"[..], b"second.example"] {
            list.push(0);
            list.extend(with_u16_len(name));
        }
        let ext = extension(0, &with_u16_len(&list));
        let hello = complete(&reframe(&handcrafted(Some(&ext)), 1 << 14));
        assert_eq!(hello.server_name.as_deref(), Some("first.example"));
    }

    #[test]
    fn malformed_extensions_are_rejected() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (
                [sni_extension(b"a.example"), sni_extension(b"b.example")].concat(),
                "duplicate extension",
            ),
            (
                [extension(0xaaaa, b""), extension(0xaaaa, b"")].concat(),
                "duplicate extension",
            ),
            (
                sni_extension(b"a\0b.example"),
                "server_name not printable ASCII",
            ),
            (
                sni_extension("é.example".as_bytes()),
                "server_name not printable ASCII",
            ),
            (sni_extension(b"a b"), "server_name not printable ASCII"),
            (sni_extension(&[b'a'; 256]), "bad server_name length"),
            (sni_extension(b""), "bad server_name length"),
            (sni_extension(b"."), "empty server_name"),
            (extension(0, &[0, 0]), "bad server_name list length"),
            (
                extension(16, &with_u16_len(b"\x00")),
                "empty ALPN protocol name",
            ),
            (
                extension(16, &with_u16_len(b"\x05h2")),
                "length field exceeds its vector",
            ),
            (extension(16, &[0, 0]), "bad ALPN list length"),
        ];
        for (ext, reason) in cases {
            let records = reframe(&handcrafted(Some(&ext)), 1 << 14);
            assert_eq!(parse(&records), Parse::NotTls(reason), "{ext:?}");
        }
        // The longest valid name is accepted.
        let ext = sni_extension(&[b'A'; 255]);
        let hello = complete(&reframe(&handcrafted(Some(&ext)), 1 << 14));
        assert_eq!(hello.server_name, Some("a".repeat(255)));
    }

    #[test]
    fn one_byte_records_reassembled() {
        let records = default_hello();
        let fragmented = reframe(&deframe(&records), 1);
        assert!(fragmented.len() > 5 * records.len());
        assert_eq!(complete(&fragmented), complete(&records));
        // And uneven splits.
        for size in [2, 3, 7, 100, 517] {
            assert_eq!(
                complete(&reframe(&deframe(&records), size)),
                complete(&records)
            );
        }
    }

    #[test]
    fn every_prefix_is_incomplete_with_a_tight_bound() {
        let records = default_hello();
        for full in [
            records.clone(),
            reframe(&deframe(&records), 1),
            reframe(&deframe(&records), 300),
        ] {
            for len in 0..full.len() {
                match parse(&full[..len]) {
                    Parse::Incomplete { needed } => {
                        assert!(needed > len, "prefix {len}: needed {needed}");
                        assert!(
                            needed <= full.len(),
                            "prefix {len}: needed {needed} > {}",
                            full.len()
                        );
                    }
                    other => panic!("prefix {len} of {}: {other:?}", full.len()),
                }
            }
            assert!(matches!(parse(&full), Parse::Complete(_)));
        }
    }

    #[test]
    fn not_tls_inputs() {
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"),
            Parse::NotTls("not a TLS handshake record")
        );
        assert_eq!(parse(b"G"), Parse::NotTls("not a TLS handshake record"));
        // SSLv2-compatible hello: 2-byte header with the high bit set.
        assert_eq!(
            parse(&[0x80, 0x2e, 0x01, 0x03, 0x01, 0x00, 0x15]),
            Parse::NotTls("not a TLS handshake record")
        );
        assert_eq!(
            parse(&[22, 2, 0]),
            Parse::NotTls("unsupported record version")
        );
        assert_eq!(
            parse(&[22, 3, 1, 0, 0]),
            Parse::NotTls("empty handshake record")
        );
        assert_eq!(
            parse(&[22, 3, 1, 0x50, 0]),
            Parse::NotTls("record too long")
        );
        // A ServerHello is a handshake, but not a ClientHello.
        assert_eq!(
            parse(&[22, 3, 3, 0, 60, 2]),
            Parse::NotTls("not a ClientHello")
        );

        let message = handcrafted(None);
        // A different record type in the middle of the hello.
        let mut records = reframe(&message[..10], 10);
        records.extend_from_slice(&[21, 3, 3, 0, 2, 2, 40]);
        assert_eq!(
            parse(&records),
            Parse::NotTls("non-handshake record inside ClientHello")
        );
        // Extra handshake bytes after the hello in its last record.
        let mut padded = message.clone();
        padded.push(0);
        assert_eq!(
            parse(&reframe(&padded, 1 << 14)),
            Parse::NotTls("data after ClientHello in its record")
        );
        // A handshake length too small for any ClientHello.
        let mut short = message.clone();
        short[3] -= 1;
        short.pop();
        assert_eq!(
            parse(&reframe(&short, 1 << 14)),
            Parse::NotTls("ClientHello too short")
        );
        // An extensions block whose length disagrees with the rest of the message.
        let mut bad_block = handcrafted(Some(&sni_extension(b"a.example")));
        bad_block[4 + 41 + 1] += 1;
        assert_eq!(
            parse(&reframe(&bad_block, 1 << 14)),
            Parse::NotTls("extensions length mismatch")
        );
    }

    #[test]
    fn incomplete_bounds_for_small_prefixes() {
        assert_eq!(
            parse(b""),
            Parse::Incomplete {
                needed: 5 + 4 + MIN_BODY
            }
        );
        assert_eq!(
            parse(&[22, 3]),
            Parse::Incomplete {
                needed: 5 + 4 + MIN_BODY
            }
        );
        // Record declared but empty payload so far: the record itself is needed.
        assert_eq!(
            parse(&[22, 3, 1, 0x02, 0x00]),
            Parse::Incomplete { needed: 5 + 512 }
        );
        // Handshake header says 1000 bytes, but the record carries only 10: another record.
        assert_eq!(
            parse(&[22, 3, 1, 0, 10, 1, 0, 0x03, 0xe8]),
            Parse::Incomplete {
                needed: 15 + 5 + (1004 - 10)
            }
        );
    }

    /// Deterministic xorshift64 for reproducible fuzzing.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn mutated_inputs_never_panic() {
        let records = default_hello();
        let seeds = [
            records.clone(),
            reframe(&deframe(&records), 1),
            reframe(&deframe(&records), 64),
            reframe(&handcrafted(Some(&sni_extension(b"x.example"))), 1 << 14),
        ];
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let mut outcomes = [0usize; 3];
        for case in 0..20_000 {
            let mut input = seeds[case % seeds.len()].clone();
            for _ in 0..=rng.below(4) {
                let at = rng.below(input.len().max(1));
                match rng.below(6) {
                    0 | 1 => {
                        if let Some(byte) = input.get_mut(at) {
                            *byte ^= 1 << rng.below(8);
                        }
                    }
                    2 => {
                        if let Some(byte) = input.get_mut(at) {
                            *byte = rng.next() as u8;
                        }
                    }
                    3 => input.truncate(at),
                    4 => input.insert(at.min(input.len()), rng.next() as u8),
                    _ => {
                        // Overwrite a would-be length field with an extreme value.
                        let value = [0u8, 0xff][rng.below(2)];
                        for byte in input.iter_mut().skip(at).take(2) {
                            *byte = value;
                        }
                    }
                }
            }
            match parse(&input) {
                Parse::Complete(_) => outcomes[0] += 1,
                Parse::Incomplete { needed } => {
                    assert!(needed > input.len());
                    outcomes[1] += 1;
                }
                Parse::NotTls(_) => outcomes[2] += 1,
            }
        }
        // Plain random bytes behind a plausible record header.
        for _ in 0..5_000 {
            let len = rng.below(300);
            let mut input = vec![22, 3, 1, (len >> 8) as u8, len as u8, 1];
            input.extend((0..len).map(|_| rng.next() as u8));
            if let Parse::Incomplete { needed } = parse(&input) {
                assert!(needed > input.len());
            }
        }
        assert!(outcomes.iter().all(|&n| n > 0), "{outcomes:?}");
    }

    #[tokio::test]
    async fn peek_reads_exactly_the_hello() {
        let records = default_hello();
        let mut input = records.clone();
        input.extend_from_slice(b"after the hello");
        let mut reader = &input[..];
        let mut buf = Vec::new();
        let parsed = peek_client_hello(&mut reader, &mut buf, MAX_CLIENT_HELLO)
            .await
            .unwrap();
        assert_eq!(parsed, Parse::Complete(complete(&records)));
        assert_eq!(buf, records);
        assert_eq!(reader, b"after the hello");
    }

    #[tokio::test]
    async fn peek_over_a_trickling_stream() {
        let records = reframe(&deframe(&default_hello()), 1);
        let (mut client, mut server) = tokio::io::duplex(64);
        let sent = records.clone();
        let writer = tokio::spawn(async move {
            for part in sent.chunks(7) {
                client.write_all(part).await.unwrap();
                tokio::task::yield_now().await;
            }
            client.write_all(b"tail").await.unwrap();
            client.shutdown().await.unwrap();
        });
        let mut buf = Vec::new();
        let parsed = peek_client_hello(&mut server, &mut buf, MAX_CLIENT_HELLO)
            .await
            .unwrap();
        assert_eq!(parsed, Parse::Complete(complete(&default_hello())));
        assert_eq!(buf, records);
        let mut rest = Vec::new();
        server.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"tail");
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn peek_stops_at_eof_limit_and_non_tls() {
        let records = default_hello();
        let mut buf = Vec::new();
        let mut reader = &records[..100];
        let parsed = peek_client_hello(&mut reader, &mut buf, MAX_CLIENT_HELLO).await;
        assert_eq!(parsed.unwrap(), Parse::NotTls("eof"));
        assert_eq!(buf, &records[..100]);

        let mut buf = Vec::new();
        let mut reader = &records[..];
        let parsed = peek_client_hello(&mut reader, &mut buf, 100).await.unwrap();
        assert!(matches!(parsed, Parse::Incomplete { needed } if needed > 100));
        assert!(buf.len() <= 100);

        let mut buf = Vec::new();
        let mut reader = &b"GET / HTTP/1.1\r\n\r\n"[..];
        let parsed = peek_client_hello(&mut reader, &mut buf, MAX_CLIENT_HELLO).await;
        assert_eq!(parsed.unwrap(), Parse::NotTls("not a TLS handshake record"));
        assert!(!buf.is_empty() && reader.len() + buf.len() == 18);
    }

    #[tokio::test]
    async fn peek_is_cancel_safe() {
        let records = default_hello();
        let (mut client, mut server) = tokio::io::duplex(4096);
        client.write_all(&records[..200]).await.unwrap();
        let mut buf = Vec::new();
        let peek = peek_client_hello(&mut server, &mut buf, MAX_CLIENT_HELLO);
        let timed_out = tokio::time::timeout(std::time::Duration::from_millis(50), peek).await;
        assert!(timed_out.is_err());
        assert_eq!(buf, &records[..200]);
        // Resuming with the same buffer completes the hello.
        client.write_all(&records[200..]).await.unwrap();
        let parsed = peek_client_hello(&mut server, &mut buf, MAX_CLIENT_HELLO)
            .await
            .unwrap();
        assert!(matches!(parsed, Parse::Complete(_)));
        assert_eq!(buf, records);
    }
}
