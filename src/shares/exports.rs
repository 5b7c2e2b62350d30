//! An NFS exports parser for `/etc/exports` and `/etc/exports.d/*.exports`, following exports(5)
//! and nfs-utils' reader.
//!
//! - One export per line: `path [-default,options] client(options) client ...`; a trailing `\`
//!   continues the line; `#` starts a comment outside quotes.
//! - The path may be double-quoted (spaces) and may hold octal escapes such as `\040`.
//! - `host(opts)`; a bare `host` gets the default options; a lone `(opts)` (a space before the
//!   parenthesis, the classic mistake) means the world `*` with those options, as nfs-utils reads it.
//! - A path without clients is exported to `*`.
//! - NFS exports read-only unless `rw` is given, so an export is read-only when every client is.
//! - A path listed twice gets the clients of both lines.

use std::path::Path;

use crate::model::NfsClient;

use super::ShareError;

/// One exported directory.
#[derive(Debug, Clone, PartialEq)]
pub struct Export {
    pub path: String,
    /// Each client with its effective options (line defaults first, then its own).
    pub clients: Vec<NfsClient>,
    pub read_only: bool,
    /// Line of the (first) entry.
    pub line: usize,
}

/// Parses the text of the exports file `file`.
pub fn parse(text: &str, file: &Path) -> Result<Vec<Export>, ShareError> {
    let mut exports: Vec<Export> = Vec::new();
    let mut lines = text.split('\n').enumerate();
    while let Some((index, raw)) = lines.next() {
        let line_no = index + 1;
        let mut logical = strip_cr(raw).to_owned();
        while let Some(cut) = continuation(&logical) {
            logical.truncate(cut);
            logical.push(' ');
            match lines.next() {
                Some((_, next)) => logical.push_str(strip_cr(next)),
                None => break,
            }
        }
        let tokens = tokenize(&logical).map_err(|message| syntax(file, line_no, message))?;
        let Some((first, rest)) = tokens.split_first() else { continue };
        let path = unescape(first);
        if !path.starts_with('/') {
            return Err(syntax(file, line_no, format!("export path {path:?} is not absolute")));
        }
        let mut defaults: Vec<String> = Vec::new();
        let mut clients = Vec::new();
        for token in rest {
            if let Some(opts) = token.strip_prefix('-') {
                defaults = split_options(opts);
                continue;
            }
            let (host, own) = match token.find('(') {
                Some(open) => {
                    let Some(inner) = token[open + 1..].strip_suffix(')') else {
                        return Err(syntax(file, line_no, format!("bad option list in {token:?}")));
                    };
                    if inner.contains(['(', ')']) {
                        return Err(syntax(file, line_no, format!("bad option list in {token:?}")));
                    }
                    let host = if open == 0 { "*" } else { &token[..open] };
                    (host.to_owned(), split_options(inner))
                }
                None => (token.clone(), Vec::new()),
            };
            let mut options = defaults.clone();
            options.extend(own);
            clients.push(NfsClient { host, options });
        }
        if clients.is_empty() {
            clients.push(NfsClient { host: "*".to_owned(), options: defaults });
        }
        match exports.iter_mut().find(|e| e.path == path) {
            Some(existing) => existing.clients.extend(clients),
            None => exports.push(Export { path, clients, read_only: true, line: line_no }),
        }
    }
    for export in &mut exports {
        export.read_only = export.clients.iter().all(client_read_only);
    }
    Ok(exports)
}

/// NFS's default is `ro`; the last of `ro` / `rw` wins.
fn client_read_only(client: &NfsClient) -> bool {
    client.options.iter().rev().find_map(|o| match o.as_str() {
        "rw" => Some(false),
        "ro" => Some(true),
        _ => None,
    }) != Some(false)
}

/// Splits a line into blank-separated tokens; quotes and parentheses keep blanks inside a token.
fn tokenize(line: &str) -> Result<Vec<String>, String> {
    let mut tokens = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut parens = false;
    for c in line.chars() {
        match c {
            '"' if !parens => quoted = !quoted,
            '#' if !quoted && !parens => break,
            '(' if !quoted => {
                parens = true;
                current.push(c);
            }
            ')' if !quoted => {
                parens = false;
                current.push(c);
            }
            c if c.is_whitespace() && !quoted && !parens => {
                if !current.is_empty() {
                    tokens.push(std::mem::take(&mut current));
                }
            }
            c if c.is_whitespace() && parens => {}
            c => current.push(c),
        }
    }
    if quoted {
        return Err("unterminated quote".to_owned());
    }
    if parens {
        return Err("unterminated option list".to_owned());
    }
    if !current.is_empty() {
        tokens.push(current);
    }
    Ok(tokens)
}

fn split_options(opts: &str) -> Vec<String> {
    opts.split(',').map(str::trim).filter(|o| !o.is_empty()).map(str::to_owned).collect()
}

/// Decodes `\ooo` octal escapes (exportfs writes a blank as `\040`), as in mountinfo.
fn unescape(raw: &str) -> String {
    crate::text::unescape(raw).into_owned()
}

fn strip_cr(line: &str) -> &str {
    line.strip_suffix('\r').unwrap_or(line)
}

fn continuation(line: &str) -> Option<usize> {
    line.trim_end().strip_suffix('\\').map(str::len)
}

fn syntax(file: &Path, line: usize, message: String) -> ShareError {
    ShareError::Syntax { path: file.to_path_buf(), line, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exports(text: &str) -> Vec<Export> {
        parse(text, Path::new("/etc/exports")).unwrap()
    }

    fn hosts(e: &Export) -> Vec<(&str, Vec<&str>)> {
        e.clients.iter().map(|c| (c.host.as_str(), c.options.iter().map(String::as_str).collect())).collect()
    }

    #[test]
    fn the_exports_5_example() {
        let e = exports(
            "# sample /etc/exports file\n\
             /               master(rw) trusty(rw,no_root_squash)\n\
             /projects       proj*.local.domain(rw)\n\
             /usr            *.local.domain(ro) @trusted(rw)\n\
             /home/joe       pc001(rw,all_squash,anonuid=150,anongid=100)\n\
             /pub            *(ro,insecure,all_squash)\n\
             /srv/www        -sync,rw server @trusted @external(ro)\n\
             /foo            2001:db8:9:e54::/64(rw) 192.0.2.0/24(rw)\n\
             /build          buildhost[0-9].local.domain(rw)\n",
        );
        assert_eq!(e.len(), 8);
        assert_eq!(e[0].path, "/");
        assert_eq!(hosts(&e[0]), [("master", vec!["rw"]), ("trusty", vec!["rw", "no_root_squash"])]);
        assert!(!e[0].read_only);
        assert!(!e[2].read_only, "one rw client makes it writable");
        assert!(e[4].read_only);
        assert_eq!(
            hosts(&e[5]),
            [("server", vec!["sync", "rw"]), ("@trusted", vec!["sync", "rw"]), ("@external", vec!["sync", "rw", "ro"])]
        );
        assert!(!e[5].read_only);
        assert_eq!(hosts(&e[6])[0].0, "2001:db8:9:e54::/64");
        assert_eq!(e[7].line, 9);
    }

    #[test]
    fn nfs_default_is_read_only() {
        let e = exports("/a host\n/b host(sync)\n/c host(rw,ro)\n/d host(ro,rw)\n/e\n");
        assert_eq!(e.iter().map(|e| e.read_only).collect::<Vec<_>>(), [true, true, true, false, true]);
        assert_eq!(hosts(&e[4]), [("*", vec![])]);
    }

    #[test]
    fn a_blank_before_the_parenthesis_exports_to_the_world() {
        let e = exports("/data host (rw)\n");
        assert_eq!(hosts(&e[0]), [("host", vec![]), ("*", vec!["rw"])]);
        assert!(!e[0].read_only);
    }

    #[test]
    fn quoted_and_escaped_paths() {
        let e = exports("\"/srv/my share\" *(ro)\n/srv/other\\040share host(rw)\n/srv/a\\\\b h\n");
        assert_eq!(e[0].path, "/srv/my share");
        assert_eq!(e[1].path, "/srv/other share");
        assert_eq!(e[2].path, "/srv/a\\\\b");
    }

    #[test]
    fn comments_continuations_and_blank_lines() {
        let e = exports("\n   # c\n/a \\\n  h1(rw) \\\n  h2   # trailing comment\n\r\n/b h # x(rw)\n");
        assert_eq!(e.len(), 2);
        assert_eq!(hosts(&e[0]), [("h1", vec!["rw"]), ("h2", vec![])]);
        assert_eq!(e[1].line, 7);
        assert!(e[1].read_only);
    }

    #[test]
    fn blanks_inside_option_lists_are_tolerated() {
        let e = exports("/a h(rw, sync)\n");
        assert_eq!(hosts(&e[0]), [("h", vec!["rw", "sync"])]);
    }

    #[test]
    fn repeated_paths_merge() {
        let e = exports("/a h1(ro)\n/b h\n/a h2(rw)\n");
        assert_eq!(e.len(), 2);
        assert_eq!(hosts(&e[0]).len(), 2);
        assert!(!e[0].read_only);
    }

    #[test]
    fn errors_name_file_and_line() {
        let err = |t: &str| parse(t, Path::new("/etc/exports.d/x.exports")).unwrap_err().to_string();
        assert_eq!(err("/ok h\nrelative h\n"), "/etc/exports.d/x.exports:2: export path \"relative\" is not absolute");
        assert_eq!(err("\"/a h\n"), "/etc/exports.d/x.exports:1: unterminated quote");
        assert_eq!(err("/a\n/b h(rw\n"), "/etc/exports.d/x.exports:2: unterminated option list");
        assert_eq!(err("/a h(rw)x\n"), "/etc/exports.d/x.exports:1: bad option list in \"h(rw)x\"");
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_text(text in "\\PC*") {
            let _ = parse(&text, Path::new("/e"));
        }

        #[test]
        fn never_panics_on_exports_like_text(text in "([/a-z \"()\\\\0-9,#-]|\n){0,200}") {
            let _ = parse(&text, Path::new("/e"));
        }
    }
}
