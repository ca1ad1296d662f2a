//! git's pkt-line framing, as the gateway reads a push's commands and writes its answers: each
//! line is four hex digits of length (the four included) and its data; `0000` flushes, `0001`
//! delimits, `0002` ends a response. Pure and bounded: a line longer than git allows or a length
//! that is not hex is an error, never a panic or an allocation the peer chose.

/// The longest pkt-line git sends or accepts (length prefix included).
pub const MAX_PKT_LEN: usize = 65520;

/// One pkt-line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PktLine<'a> {
    Data(&'a [u8]),
    Flush,
    Delim,
    ResponseEnd,
}

/// What is wrong with a pkt-line stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PktError {
    /// The length prefix is not four hex digits, or names an impossible length.
    BadLength,
    /// A line longer than [`MAX_PKT_LEN`].
    TooLong,
    /// The stream ends inside a line.
    Truncated,
}

impl std::fmt::Display for PktError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PktError::BadLength => "a pkt-line length is not four hex digits of a possible length",
            PktError::TooLong => "a pkt-line is longer than git allows (65520 bytes)",
            PktError::Truncated => "the request ends inside a pkt-line",
        })
    }
}

/// Reads the pkt-line at the start of `input`: the line and what follows it.
///
/// # Errors
/// [`PktError`] for a malformed or truncated line.
pub fn read(input: &[u8]) -> Result<(PktLine<'_>, &[u8]), PktError> {
    let prefix = input.get(..4).ok_or(PktError::Truncated)?;
    let hex = std::str::from_utf8(prefix).map_err(|_| PktError::BadLength)?;
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(PktError::BadLength);
    }
    let len = usize::from_str_radix(hex, 16).map_err(|_| PktError::BadLength)?;
    let rest = &input[4..];
    match len {
        0 => Ok((PktLine::Flush, rest)),
        1 => Ok((PktLine::Delim, rest)),
        2 => Ok((PktLine::ResponseEnd, rest)),
        3 => Err(PktError::BadLength),
        len if len > MAX_PKT_LEN => Err(PktError::TooLong),
        len => {
            let data = rest.get(..len - 4).ok_or(PktError::Truncated)?;
            Ok((PktLine::Data(data), &rest[len - 4..]))
        }
    }
}

/// `data` as one pkt-line.
pub fn encode(data: &[u8]) -> Vec<u8> {
    assert!(data.len() + 4 <= MAX_PKT_LEN, "a pkt-line holds at most 65516 bytes of data");
    let mut line = format!("{:04x}", data.len() + 4).into_bytes();
    line.extend_from_slice(data);
    line
}

/// The flush packet.
pub const FLUSH: &[u8] = b"0000";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_read_back_as_written_and_specials_are_named() {
        let mut stream = encode(b"hello\n");
        stream.extend_from_slice(FLUSH);
        stream.extend_from_slice(b"0001rest");
        let (first, rest) = read(&stream).unwrap();
        assert_eq!(first, PktLine::Data(b"hello\n"));
        let (flush, rest) = read(rest).unwrap();
        assert_eq!(flush, PktLine::Flush);
        let (delim, rest) = read(rest).unwrap();
        assert_eq!((delim, rest), (PktLine::Delim, &b"rest"[..]));
        assert_eq!(encode(b"a"), b"0005a");
    }

    #[test]
    fn malformed_lines_are_errors_not_panics() {
        assert_eq!(read(b"00"), Err(PktError::Truncated));
        assert_eq!(read(b"zzzzdata"), Err(PktError::BadLength));
        assert_eq!(read(b"+fffdata"), Err(PktError::BadLength), "from_str_radix would take a sign");
        assert_eq!(read(b"0003"), Err(PktError::BadLength));
        assert_eq!(read(b"fff1"), Err(PktError::TooLong));
        assert_eq!(read(b"0009abc"), Err(PktError::Truncated));
    }
}
