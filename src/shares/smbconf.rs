//! A Samba `smb.conf` parser that reads the file the way Samba's loadparm does.
//!
//! - `[section]` headers; a repeated section adds to the first one; `[global]` (or `[globals]`)
//!   holds defaults that a share section copies when it starts, as Samba copies them.
//! - `include = file`: read in place (relative to the including file's directory), nested,
//!   with cycles and missing files reported; `copy = share` copies another share's settings.
//! - Whole-line `#` and `;` comments; a trailing `\` continues a line onto the next.
//! - Parameter names ignore case, spaces and underscores (`read only` = `readonly` = `read_ONLY`).
//! - Synonyms: `writeable`/`writable`/`write ok` are the inverse of `read only`;
//!   `browsable`/`browseable`; `guest ok`/`public`; `directory`/`path`; `print ok`/`printable`.
//! - `[printers]` and printable shares are left out; `[homes]` is reported with `special = "homes"`.
//! - `%` substitutions are kept as written (they depend on the connecting client); an include
//!   whose path holds one cannot be resolved and is skipped with a warning.
//! - Like Samba, a line without `=` is ignored with a warning, and a share without a path
//!   (other than `[homes]`) is unavailable.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use super::text::read_text;
use super::ShareError;

/// Deepest include nesting followed; deeper is reported (a symlink loop defeats cycle detection by name).
pub const MAX_INCLUDE_DEPTH: usize = 32;

/// Where included files come from: the file system in the agent, a map in tests.
pub trait IncludeResolver {
    /// The text of `path`, or `Ok(None)` when it does not exist. `context` names the including
    /// file and line for error messages.
    fn read(&mut self, path: &Path, context: &str) -> Result<Option<String>, ShareError>;
}

/// One share as Samba would serve it.
#[derive(Debug, Clone, PartialEq)]
pub struct SmbShare {
    pub name: String,
    /// Empty when not set (normal for `[homes]`).
    pub path: String,
    /// `available`, and false for a share without a path (Samba makes those unavailable).
    pub enabled: bool,
    pub read_only: bool,
    pub guest_ok: bool,
    pub browseable: bool,
    /// `valid users`, as written (`@group`, `+group`, `%S` included).
    pub users: Vec<String>,
    pub comment: Option<String>,
    /// `homes` for the `[homes]` section.
    pub special: Option<String>,
    /// The file and line of the section header that defined the share.
    pub file: PathBuf,
    pub line: usize,
}

/// The result of parsing a configuration with its includes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SmbConf {
    pub shares: Vec<SmbShare>,
    /// Every file read or looked for (missing includes too): what a watcher must watch.
    pub files: Vec<PathBuf>,
    /// Lines Samba would ignore with a warning.
    pub warnings: Vec<String>,
}

/// Parses `text`, the contents of `file`; includes are read through `resolver`.
pub fn parse(text: &str, file: &Path, resolver: &mut dyn IncludeResolver) -> Result<SmbConf, ShareError> {
    let mut parser = Parser::new(resolver);
    parser.out.files.push(file.to_path_buf());
    parser.stack.push(normalize(file));
    parser.parse_text(text, file)?;
    Ok(parser.finish())
}

/// Reads `reader` (capped and checked like a file) and parses it as `file`.
pub fn parse_reader(reader: impl Read, file: &Path, resolver: &mut dyn IncludeResolver) -> Result<SmbConf, ShareError> {
    let text = read_text(reader, file, "")?;
    parse(&text, file, resolver)
}

/// The share-level parameters diskwatch reports; `None` means "not set, use Samba's default".
#[derive(Debug, Clone, Default)]
struct Params {
    path: Option<String>,
    available: Option<bool>,
    read_only: Option<bool>,
    guest_ok: Option<bool>,
    browseable: Option<bool>,
    printable: Option<bool>,
    valid_users: Option<String>,
    comment: Option<String>,
}

struct Section {
    name: String,
    params: Params,
    file: PathBuf,
    line: usize,
}

enum Current {
    Global,
    Section(usize),
}

struct Parser<'r> {
    resolver: &'r mut dyn IncludeResolver,
    /// Normalised paths of the files being read, outermost first.
    stack: Vec<PathBuf>,
    global: Params,
    sections: Vec<Section>,
    by_name: HashMap<String, usize>,
    current: Current,
    out: SmbConf,
}

impl<'r> Parser<'r> {
    fn new(resolver: &'r mut dyn IncludeResolver) -> Self {
        Self {
            resolver,
            stack: Vec::new(),
            global: Params::default(),
            sections: Vec::new(),
            by_name: HashMap::new(),
            current: Current::Global,
            out: SmbConf::default(),
        }
    }

    fn parse_text(&mut self, text: &str, file: &Path) -> Result<(), ShareError> {
        let mut lines = text.split('\n').enumerate();
        while let Some((index, raw)) = lines.next() {
            let line_no = index + 1;
            let first = raw.trim_start();
            if first.starts_with('#') || first.starts_with(';') {
                continue;
            }
            let mut logical = Cow::Borrowed(strip_cr(raw));
            // Samba: a backslash before the end of the line (trailing blanks allowed) joins the next line.
            while let Some(cut) = continuation(&logical) {
                let joined = logical.to_mut();
                joined.truncate(cut);
                match lines.next() {
                    Some((_, next)) => joined.push_str(strip_cr(next)),
                    None => break,
                }
            }
            let line = logical.trim();
            if line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix('[') {
                let Some(end) = rest.find(']') else {
                    return Err(syntax(file, line_no, "section header without a closing ']'"));
                };
                let name = rest[..end].trim();
                if name.is_empty() {
                    return Err(syntax(file, line_no, "empty section name"));
                }
                self.start_section(name, file, line_no);
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                self.warn(file, line_no, format!("ignoring line without '=': {line:?}"));
                continue;
            };
            let key = normalize_key(key);
            let value = value.trim();
            if key.is_empty() {
                self.warn(file, line_no, "ignoring parameter without a name".to_owned());
                continue;
            }
            match key.as_str() {
                "include" => self.include(value, file, line_no)?,
                "copy" => self.copy(value, file, line_no),
                _ => {
                    let params = match self.current {
                        Current::Global => &mut self.global,
                        Current::Section(i) => &mut self.sections[i].params,
                    };
                    if let Err(message) = set(params, &key, value) {
                        self.warn(file, line_no, message);
                    }
                }
            }
        }
        Ok(())
    }

    fn start_section(&mut self, name: &str, file: &Path, line: usize) {
        let lower = name.to_lowercase();
        if lower == "global" || lower == "globals" {
            self.current = Current::Global;
            return;
        }
        let index = match self.by_name.get(&lower) {
            Some(i) => *i,
            None => {
                // Samba initialises a new service from the globals as they stand now.
                self.sections.push(Section {
                    name: name.to_owned(),
                    params: self.global.clone(),
                    file: file.to_path_buf(),
                    line,
                });
                self.by_name.insert(lower, self.sections.len() - 1);
                self.sections.len() - 1
            }
        };
        self.current = Current::Section(index);
    }

    fn include(&mut self, value: &str, file: &Path, line: usize) -> Result<(), ShareError> {
        let value = unquote(value);
        if value.is_empty() {
            self.warn(file, line, "ignoring empty include".to_owned());
            return Ok(());
        }
        if value.contains('%') {
            self.warn(file, line, format!("skipping include of {value:?}: it depends on the connecting client"));
            return Ok(());
        }
        let target = match Path::new(value) {
            p if p.is_absolute() => p.to_path_buf(),
            p => file.parent().unwrap_or(Path::new("/")).join(p),
        };
        let key = normalize(&target);
        if !self.out.files.contains(&target) {
            self.out.files.push(target.clone());
        }
        if self.stack.contains(&key) {
            return Err(ShareError::IncludeCycle { path: file.to_path_buf(), line, include: target });
        }
        if self.stack.len() >= MAX_INCLUDE_DEPTH {
            return Err(ShareError::IncludeDepth { path: file.to_path_buf(), line, limit: MAX_INCLUDE_DEPTH });
        }
        let context = format!(" (included from {}:{line})", file.display());
        let Some(text) = self.resolver.read(&target, &context)? else {
            return Err(ShareError::MissingInclude { path: file.to_path_buf(), line, include: target });
        };
        self.stack.push(key);
        let result = self.parse_text(&text, &target);
        self.stack.pop();
        result
    }

    fn copy(&mut self, value: &str, file: &Path, line: usize) {
        let Current::Section(to) = self.current else {
            self.warn(file, line, "ignoring copy in [global]".to_owned());
            return;
        };
        match self.by_name.get(&unquote(value).to_lowercase()) {
            Some(&from) => self.sections[to].params = self.sections[from].params.clone(),
            None => self.warn(file, line, format!("ignoring copy of unknown share {value:?}")),
        }
    }

    fn warn(&mut self, file: &Path, line: usize, message: String) {
        self.out.warnings.push(format!("{}:{line}: {message}", file.display()));
    }

    fn finish(mut self) -> SmbConf {
        for section in self.sections {
            let lower = section.name.to_lowercase();
            let p = section.params;
            if lower == "printers" || p.printable.unwrap_or(false) {
                continue;
            }
            let homes = lower == "homes";
            let path = p.path.unwrap_or_default();
            self.out.shares.push(SmbShare {
                enabled: p.available.unwrap_or(true) && (homes || !path.is_empty()),
                path,
                read_only: p.read_only.unwrap_or(true),
                guest_ok: p.guest_ok.unwrap_or(false),
                browseable: p.browseable.unwrap_or(true),
                users: p.valid_users.as_deref().map(split_list).unwrap_or_default(),
                comment: p.comment.filter(|c| !c.is_empty()),
                special: homes.then(|| "homes".to_owned()),
                name: section.name,
                file: section.file,
                line: section.line,
            });
        }
        self.out
    }
}

/// Applies one parameter; unknown ones are ignored (diskwatch reports only a few), bad values are an error message.
fn set(params: &mut Params, key: &str, value: &str) -> Result<(), String> {
    let boolean = || parse_bool(value).ok_or_else(|| format!("ignoring {key} = {value:?}: not a boolean"));
    match key {
        "path" | "directory" => params.path = Some(unquote(value).to_owned()),
        "comment" => params.comment = Some(unquote(value).to_owned()),
        "available" => params.available = Some(boolean()?),
        "readonly" => params.read_only = Some(boolean()?),
        "writeable" | "writable" | "writeok" => params.read_only = Some(!boolean()?),
        "guestok" | "public" => params.guest_ok = Some(boolean()?),
        "browseable" | "browsable" => params.browseable = Some(boolean()?),
        "printable" | "printok" => params.printable = Some(boolean()?),
        "validusers" => params.valid_users = Some(value.to_owned()),
        _ => {}
    }
    Ok(())
}

/// Samba's booleans.
fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "yes" | "true" | "on" | "1" => Some(true),
        "no" | "false" | "off" | "0" => Some(false),
        _ => None,
    }
}

/// Lower case without spaces and underscores, as Samba compares parameter names.
fn normalize_key(key: &str) -> String {
    key.chars().filter(|c| !c.is_whitespace() && *c != '_').flat_map(char::to_lowercase).collect()
}

/// A Samba list: separated by commas or blanks, `"double quotes"` keep blanks inside one entry.
fn split_list(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in value.chars() {
        match c {
            '"' => quoted = !quoted,
            c if !quoted && (c == ',' || c.is_whitespace()) => {
                if !current.is_empty() {
                    out.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Removes one pair of surrounding double quotes.
fn unquote(value: &str) -> &str {
    value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value)
}

fn strip_cr(line: &str) -> &str {
    line.strip_suffix('\r').unwrap_or(line)
}

/// Where to cut a line that continues onto the next: the position of its final backslash.
fn continuation(line: &str) -> Option<usize> {
    let trimmed = line.trim_end();
    trimmed.strip_suffix('\\').map(str::len)
}

fn syntax(file: &Path, line: usize, message: &str) -> ShareError {
    ShareError::Syntax { path: file.to_path_buf(), line, message: message.to_owned() }
}

/// Lexical normalisation (`.` and `..` resolved) so one file reached by two spellings is one file.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
#[path = "smbconf_tests.rs"]
mod tests;
