//! Tests of the smb.conf parser: the real fixture files, every rule, and includes through a map.

use std::collections::HashMap;

use super::*;

/// Files held in memory; a missing key is a missing file.
#[derive(Default)]
struct Files(HashMap<PathBuf, String>);

impl Files {
    fn with(mut self, path: &str, text: &str) -> Self {
        self.0.insert(PathBuf::from(path), text.to_owned());
        self
    }
}

impl IncludeResolver for Files {
    fn read(&mut self, path: &Path, _context: &str) -> Result<Option<String>, ShareError> {
        Ok(self.0.get(path).cloned())
    }
}

fn conf(text: &str) -> SmbConf {
    parse(text, Path::new("/etc/samba/smb.conf"), &mut Files::default()).unwrap()
}

fn share<'a>(c: &'a SmbConf, name: &str) -> &'a SmbShare {
    c.shares.iter().find(|s| s.name == name).unwrap_or_else(|| panic!("no share {name} in {c:#?}"))
}

fn names(c: &SmbConf) -> Vec<&str> {
    c.shares.iter().map(|s| s.name.as_str()).collect()
}

fn fixture(name: &str) -> SmbConf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/samba").join(name);
    let file = std::fs::File::open(&path).unwrap();
    parse_reader(file, &path, &mut Files::default()).unwrap()
}

#[test]
fn debian_default_config() {
    let c = fixture("debian-default.smb.conf");
    // [printers] is printable and left out; [print$] is an ordinary share.
    assert_eq!(names(&c), ["homes", "print$"]);
    let homes = share(&c, "homes");
    assert_eq!(homes.special.as_deref(), Some("homes"));
    assert!(homes.enabled && homes.read_only && !homes.browseable && !homes.guest_ok);
    assert_eq!(homes.users, ["%S"]);
    assert_eq!(homes.path, "");
    assert_eq!(homes.comment.as_deref(), Some("Home Directories"));
    let drivers = share(&c, "print$");
    assert_eq!(drivers.path, "/var/lib/samba/printers");
    assert!(drivers.enabled && drivers.read_only && drivers.browseable && !drivers.guest_ok);
    assert_eq!(drivers.special, None);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn samba_example_config() {
    let c = fixture("samba-example.smb.conf");
    assert_eq!(names(&c), ["homes"]);
    let homes = share(&c, "homes");
    // writable = yes is read only = no.
    assert!(!homes.read_only && !homes.browseable);
    assert!(homes.line > 1 && homes.file.ends_with("samba-example.smb.conf"));
}

#[test]
fn defaults_are_samba_defaults() {
    let c = conf("[data]\npath = /srv/data\n");
    let s = share(&c, "data");
    assert!(s.enabled && s.read_only && s.browseable && !s.guest_ok);
    assert!(s.users.is_empty() && s.comment.is_none());
    assert_eq!((s.line, s.file.as_path()), (1, Path::new("/etc/samba/smb.conf")));
}

#[test]
fn keys_ignore_case_spaces_and_underscores() {
    let c = conf("[a]\n  PATH=/a\nRead_Only = NO\n  Guest  OK = Yes\nbrowse_able = off\n");
    let s = share(&c, "a");
    assert_eq!(s.path, "/a");
    assert!(!s.read_only && s.guest_ok && !s.browseable);
}

#[test]
fn synonyms() {
    let c = conf(
        "[w1]\npath=/1\nwriteable = yes\n[w2]\npath=/2\nwritable = true\n[w3]\npath=/3\nwrite ok = 1\n\
         [ro]\npath=/4\nwritable = yes\nread only = yes\n[b]\npath=/5\nbrowsable = no\n[p]\npath=/6\npublic = yes\n\
         [d]\ndirectory = /7\n[off]\npath=/8\navailable = no\n",
    );
    for n in ["w1", "w2", "w3"] {
        assert!(!share(&c, n).read_only, "{n}");
    }
    // The last of the synonyms wins, as in Samba.
    assert!(share(&c, "ro").read_only);
    assert!(!share(&c, "b").browseable);
    assert!(share(&c, "p").guest_ok);
    assert_eq!(share(&c, "d").path, "/7");
    assert!(!share(&c, "off").enabled);
}

#[test]
fn comments_and_continuations() {
    let c = conf(
        "# comment\n; other comment\n   # indented\n[a]\npath = /srv/\\\n  a b \\  \nc\ncomment = not # a comment\n\
         ; path = /ignored\n# continued comment \\\npath2 = x\n",
    );
    let s = share(&c, "a");
    assert_eq!(s.path, "/srv/  a b c");
    assert_eq!(s.comment.as_deref(), Some("not # a comment"));
}

#[test]
fn crlf_line_ends() {
    let c = conf("[a]\r\npath = /a\r\nread only = no\r\n");
    assert_eq!(share(&c, "a").path, "/a");
    assert!(!share(&c, "a").read_only);
}

#[test]
fn globals_are_inherited_when_a_share_starts() {
    let c = conf(
        "guest ok = yes\n[global]\nread only = no\nbrowseable = no\n[a]\npath=/a\nbrowseable = yes\n\
         [global]\navailable = no\n[b]\npath=/b\n",
    );
    let a = share(&c, "a");
    assert!(a.guest_ok && !a.read_only && a.browseable && a.enabled);
    let b = share(&c, "b");
    assert!(!b.enabled && !b.browseable && b.guest_ok);
}

#[test]
fn printers_and_printable_shares_are_left_out() {
    let c = conf(
        "[printers]\npath=/var/spool\n[pdf]\npath=/p\nprintable = yes\n[q]\npath=/q\nprint ok = yes\n[x]\npath=/x\n",
    );
    assert_eq!(names(&c), ["x"]);
}

#[test]
fn repeated_sections_merge_case_insensitively() {
    let c = conf("[Data]\npath=/d\n[other]\npath=/o\n[DATA]\nread only = no\n");
    assert_eq!(names(&c), ["Data", "other"]);
    assert!(!share(&c, "Data").read_only);
    assert_eq!(share(&c, "Data").path, "/d");
}

#[test]
fn share_without_path_is_unavailable_like_samba_makes_it() {
    let c = conf("[nopath]\ncomment = x\n[homes]\n");
    assert!(!share(&c, "nopath").enabled);
    assert!(share(&c, "homes").enabled);
}

#[test]
fn valid_users_and_substitutions() {
    let c = conf("[a]\npath = /srv/%U\nvalid users = alice, @staff +admins \"john doe\",bob\n");
    let s = share(&c, "a");
    assert_eq!(s.path, "/srv/%U");
    assert_eq!(s.users, ["alice", "@staff", "+admins", "john doe", "bob"]);
}

#[test]
fn quoted_path() {
    let c = conf("[a]\npath = \"/srv/my share\"\n");
    assert_eq!(share(&c, "a").path, "/srv/my share");
}

#[test]
fn copy_takes_another_shares_settings() {
    let c = conf(
        "[base]\npath=/b\nread only = no\nguest ok = yes\n[c]\ncopy = base\npath = /c\n[d]\ncopy = nothere\npath=/d\n",
    );
    let s = share(&c, "c");
    assert!(!s.read_only && s.guest_ok);
    assert_eq!(s.path, "/c");
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
}

#[test]
fn bad_lines_are_warnings_like_in_samba() {
    let c = conf("[a]\npath=/a\njust words\nread only = maybe\n= x\n");
    assert!(share(&c, "a").read_only);
    assert_eq!(c.warnings.len(), 3, "{:?}", c.warnings);
    assert!(c.warnings[0].starts_with("/etc/samba/smb.conf:3: ignoring line without '='"), "{:?}", c.warnings);
    assert!(c.warnings[1].starts_with("/etc/samba/smb.conf:4: ignoring readonly"), "{:?}", c.warnings);
}

#[test]
fn broken_section_header_is_an_error_with_file_and_line() {
    let e = parse("[ok]\npath=/a\n\n[broken\npath=/b\n", Path::new("/s.conf"), &mut Files::default()).unwrap_err();
    assert_eq!(e.to_string(), "/s.conf:4: section header without a closing ']'");
    let e = parse("[  ]\n", Path::new("/s.conf"), &mut Files::default()).unwrap_err();
    assert_eq!(e.to_string(), "/s.conf:1: empty section name");
}

#[test]
fn error_lines_count_physical_lines_after_continuations() {
    let e = parse("a = b\\\nc\n[x\n", Path::new("/s.conf"), &mut Files::default()).unwrap_err();
    assert_eq!(e.to_string(), "/s.conf:3: section header without a closing ']'");
}

#[test]
fn includes_nested_and_relative() {
    let mut files = Files::default()
        .with("/etc/samba/shares.conf", "[inc]\npath = /inc\ninclude = more/deeper.conf\n")
        .with("/etc/samba/more/deeper.conf", "read only = no\n[deep]\npath = /deep\n")
        .with("/abs.conf", "[abs]\npath=/abs\n");
    let c = parse(
        "[global]\nguest ok = yes\ninclude = shares.conf\n[after]\npath=/after\ninclude = /abs.conf\n",
        Path::new("/etc/samba/smb.conf"),
        &mut files,
    )
    .unwrap();
    assert_eq!(names(&c), ["inc", "deep", "after", "abs"]);
    // Parameters before the first header of an included file go to the section being read.
    assert!(!share(&c, "inc").read_only);
    assert!(share(&c, "deep").guest_ok);
    assert_eq!(share(&c, "deep").file, Path::new("/etc/samba/more/deeper.conf"));
    assert_eq!(
        c.files,
        ["/etc/samba/smb.conf", "/etc/samba/shares.conf", "/etc/samba/more/deeper.conf", "/abs.conf"]
            .map(PathBuf::from)
    );
}

#[test]
fn missing_include_is_reported_with_file_and_line_and_still_watched() {
    let mut files = Files::default().with("/etc/samba/a.conf", "\ninclude = b.conf\n");
    let mut parser = Parser::new(&mut files);
    parser.stack.push(PathBuf::from("/etc/samba/smb.conf"));
    let e = parser.parse_text("[x]\ninclude = a.conf\n", Path::new("/etc/samba/smb.conf")).unwrap_err();
    assert_eq!(e.to_string(), "/etc/samba/a.conf:2: included file /etc/samba/b.conf does not exist");
    assert!(parser.out.files.contains(&PathBuf::from("/etc/samba/b.conf")));
}

#[test]
fn include_cycles_are_detected() {
    let mut files = Files::default()
        .with("/etc/samba/a.conf", "include = b.conf\n")
        .with("/etc/samba/b.conf", "\n\ninclude = ./../samba/a.conf\n");
    let e = parse("include = a.conf\n", Path::new("/etc/samba/smb.conf"), &mut files).unwrap_err();
    assert_eq!(e.to_string(), "/etc/samba/b.conf:3: include cycle: /etc/samba/./../samba/a.conf is already being read");
    let mut files = Files::default();
    let e = parse("include = smb.conf\n", Path::new("/etc/samba/smb.conf"), &mut files).unwrap_err();
    assert!(matches!(e, ShareError::IncludeCycle { line: 1, .. }), "{e}");
}

#[test]
fn the_same_file_may_be_included_twice() {
    let mut files = Files::default().with("/etc/samba/ro.conf", "read only = no\n");
    let c = parse(
        "[a]\npath=/a\ninclude = ro.conf\n[b]\npath=/b\ninclude = ro.conf\n",
        Path::new("/etc/samba/smb.conf"),
        &mut files,
    )
    .unwrap();
    assert!(!share(&c, "a").read_only && !share(&c, "b").read_only);
}

#[test]
fn includes_with_substitutions_are_skipped() {
    let c = conf("include = /etc/samba/smb.conf.%m\n[a]\npath=/a\n");
    assert_eq!(names(&c), ["a"]);
    assert_eq!(c.warnings.len(), 1);
}

#[test]
fn include_depth_is_limited() {
    // Each file includes the next name: no cycle by name, but endless.
    struct Endless;
    impl IncludeResolver for Endless {
        fn read(&mut self, path: &Path, _: &str) -> Result<Option<String>, ShareError> {
            Ok(Some(format!("include = {}x\n", path.display())))
        }
    }
    let e = parse("include = /a\n", Path::new("/s.conf"), &mut Endless).unwrap_err();
    assert!(matches!(e, ShareError::IncludeDepth { .. }), "{e}");
}

#[test]
fn a_thousand_shares() {
    let mut text = String::from("[global]\nworkgroup = X\n");
    for i in 0..1000 {
        text.push_str(&format!("[share{i}]\n  path = /srv/share{i}\n  read only = no\n  valid users = u{i}\n"));
    }
    let c = conf(&text);
    assert_eq!(c.shares.len(), 1000);
    assert_eq!(share(&c, "share999").users, ["u999"]);
}

proptest::proptest! {
    #[test]
    fn never_panics_on_arbitrary_text(text in "\\PC*") {
        let _ = parse(&text, Path::new("/p.conf"), &mut Files::default());
    }

    #[test]
    fn never_panics_on_config_like_text(
        lines in proptest::collection::vec("(\\[[a-z ]{0,4}\\]?|[a-z _]{0,8}=[ a-z/%\"\\\\]{0,8}|include = [a-c.]{0,4}|#.*|\\\\|copy = [a-z]{0,2})", 0..40)
    ) {
        // Every include target exists and includes others: cycles and depth are hit often.
        struct All;
        impl IncludeResolver for All {
            fn read(&mut self, _: &Path, _: &str) -> Result<Option<String>, ShareError> {
                Ok(Some("include = a\n[s]\npath=/s\n".to_owned()))
            }
        }
        let _ = parse(&lines.join("\n"), Path::new("/etc/p.conf"), &mut All);
    }
}
