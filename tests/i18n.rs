//! Translations: the template in `po/vireo.pot` holds every string the
//! window marks for translation (checked against a Rust-aware scan of
//! `src/ui`, independent of xgettext), `zh_CN` translates all of it,
//! every po file compiles, no widget text escapes `gettext`, and the
//! window really speaks Chinese under `LANG=zh_CN.UTF-8`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::desktop::{artifacts, App, Display};
use common::{require_program, Home};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Non-comment, non-empty lines of a po/ list file.
fn list(name: &str) -> Vec<String> {
    read(&root().join("po").join(name))
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

/// Every `.rs` file below `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The `src/ui` sources (subfolders too), by path relative to the checkout.
fn ui_sources() -> Vec<(String, String)> {
    let mut files = Vec::new();
    rust_files(&root().join("src/ui"), &mut files);
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let rel = p
                .strip_prefix(root())
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (rel, read(&p))
        })
        .collect()
}

// ---------------------------------------------------------------------
// A small Rust lexer: enough to tell string literals from comments, char
// literals and lifetimes, and to decode escapes as rustc does.

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Str(String),
    Punct(char),
}

fn lex(src: &str) -> Vec<(Token, usize)> {
    let chars: Vec<char> = src.chars().collect();
    let mut tokens = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let at = line;
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '/' && chars.get(i + 1) == Some(&'/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            let mut depth = 0;
            loop {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if chars[i] == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
        } else if c == '"' {
            let (text, end) = cooked_string(&chars, i + 1, &mut line);
            tokens.push((Token::Str(text), at));
            i = end;
        } else if (c == 'r' || c == 'b') && raw_or_byte_string(&chars, i).is_some() {
            let (text, end, byte) = raw_or_byte_string(&chars, i).unwrap();
            line += text.matches('\n').count();
            if !byte {
                tokens.push((Token::Str(text), at));
            }
            i = end;
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a).
            if chars.get(i + 1) == Some(&'\\') {
                let mut j = i + 2;
                while chars[j] != '\'' {
                    j += 1;
                }
                i = j + 1;
            } else if chars.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                i += 1;
            }
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push((Token::Ident(chars[start..i].iter().collect()), at));
        } else {
            tokens.push((Token::Punct(c), at));
            i += 1;
        }
    }
    tokens
}

/// A `"…"` literal's value from just after its opening quote; returns it
/// and the index after the closing quote.
fn cooked_string(chars: &[char], mut i: usize, line: &mut usize) -> (String, usize) {
    let mut text = String::new();
    loop {
        let c = chars[i];
        match c {
            '"' => return (text, i + 1),
            '\\' => {
                let e = chars[i + 1];
                i += 2;
                match e {
                    'n' => text.push('\n'),
                    't' => text.push('\t'),
                    'r' => text.push('\r'),
                    '0' => text.push('\0'),
                    '\\' | '"' | '\'' => text.push(e),
                    'x' => {
                        let hex: String = chars[i..i + 2].iter().collect();
                        text.push(u8::from_str_radix(&hex, 16).unwrap() as char);
                        i += 2;
                    }
                    'u' => {
                        let close = i + chars[i..].iter().position(|&c| c == '}').unwrap();
                        let hex: String = chars[i + 1..close].iter().collect();
                        text.push(char::from_u32(u32::from_str_radix(&hex, 16).unwrap()).unwrap());
                        i = close + 1;
                    }
                    '\n' => {
                        // A line continuation skips the newline and the
                        // next line's leading whitespace.
                        *line += 1;
                        while chars[i].is_whitespace() {
                            if chars[i] == '\n' {
                                *line += 1;
                            }
                            i += 1;
                        }
                    }
                    other => panic!("unknown escape \\{other}"),
                }
            }
            _ => {
                if c == '\n' {
                    *line += 1;
                }
                text.push(c);
                i += 1;
            }
        }
    }
}

/// `r"…"`, `r#"…"#`, `b"…"`, `br"…"` at `i`: (value, end, is_bytes).
fn raw_or_byte_string(chars: &[char], i: usize) -> Option<(String, usize, bool)> {
    // Not the tail of an identifier such as `bar"`.
    if i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_') {
        return None;
    }
    let mut j = i;
    let byte = chars[j] == 'b';
    if byte {
        j += 1;
    }
    if chars.get(j) == Some(&'r') {
        j += 1;
        let hashes = chars[j..].iter().take_while(|&&c| c == '#').count();
        j += hashes;
        if chars.get(j) != Some(&'"') {
            return None;
        }
        let start = j + 1;
        let closing: Vec<char> = format!("\"{}", "#".repeat(hashes)).chars().collect();
        let end = (start..chars.len()).find(|&k| chars[k..].starts_with(&closing))?;
        Some((
            chars[start..end].iter().collect(),
            end + closing.len(),
            byte,
        ))
    } else if byte && chars.get(j) == Some(&'"') {
        let mut line = 0;
        let (text, end) = cooked_string(chars, j + 1, &mut line);
        Some((text, end, true))
    } else {
        None
    }
}

/// Every string literal passed to gettext, ngettext (both forms) or
/// gettext_f, with the file and line where it is.
fn marked_strings() -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    for (path, src) in ui_sources() {
        let tokens = lex(&src);
        for (k, (token, line)) in tokens.iter().enumerate() {
            let Token::Ident(name) = token else { continue };
            if !matches!(name.as_str(), "gettext" | "ngettext" | "gettext_f") {
                continue;
            }
            if tokens.get(k + 1).map(|t| &t.0) != Some(&Token::Punct('(')) {
                continue;
            }
            if let Some((Token::Str(s), _)) = tokens.get(k + 2) {
                found.insert(s.clone(), format!("{path}:{line}"));
                if name == "ngettext" {
                    if let (Some((Token::Punct(','), _)), Some((Token::Str(p), _))) =
                        (tokens.get(k + 3), tokens.get(k + 4))
                    {
                        found.insert(p.clone(), format!("{path}:{line}"));
                    }
                }
            }
        }
    }
    found
}

// ---------------------------------------------------------------------
// A po/pot reader.

#[derive(Debug, Default)]
struct Entry {
    msgid: String,
    plural: Option<String>,
    msgstr: Vec<String>,
    fuzzy: bool,
    references: Vec<String>,
}

fn unquote(s: &str) -> String {
    let inner = &s[s.find('"').unwrap() + 1..s.rfind('"').unwrap()];
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(other) => out.push(other),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The entries of a po or pot file, header and obsolete (`#~`) ones left out.
fn parse_po(text: &str) -> Vec<Entry> {
    let mut entries = Vec::new();
    for block in text.split("\n\n") {
        let mut entry = Entry::default();
        let mut field: Option<usize> = None; // 0 msgid, 1 plural, 2+ msgstr[n-2]
        let mut obsolete = false;
        for line in block.lines() {
            if line.starts_with("#~") {
                obsolete = true;
            } else if let Some(flags) = line.strip_prefix("#,") {
                entry.fuzzy |= flags.split(',').any(|f| f.trim() == "fuzzy");
            } else if let Some(refs) = line.strip_prefix("#:") {
                entry
                    .references
                    .extend(refs.split_whitespace().map(String::from));
            } else if line.starts_with("msgid_plural") {
                entry.plural = Some(unquote(line));
                field = Some(1);
            } else if line.starts_with("msgid") {
                entry.msgid = unquote(line);
                field = Some(0);
            } else if line.starts_with("msgstr") {
                entry.msgstr.push(unquote(line));
                field = Some(1 + entry.msgstr.len());
            } else if line.starts_with('"') {
                let more = unquote(line);
                match field {
                    Some(0) => entry.msgid.push_str(&more),
                    Some(1) => entry.plural.as_mut().unwrap().push_str(&more),
                    Some(n) => entry.msgstr[n - 2].push_str(&more),
                    None => {}
                }
            }
        }
        if field.is_some() && !obsolete && !entry.msgid.is_empty() {
            entries.push(entry);
        }
    }
    entries
}

fn msgids(entries: &[Entry]) -> BTreeSet<String> {
    entries
        .iter()
        .flat_map(|e| std::iter::once(e.msgid.clone()).chain(e.plural.clone()))
        .collect()
}

/// The template as scripts/update-pot.sh makes it now, from the sources as
/// they are now.
fn fresh_pot() -> (tempfile::TempDir, String) {
    require_program("xgettext");
    let dir = tempfile::tempdir().unwrap();
    let pot = dir.path().join("vireo.pot");
    let out = Command::new(root().join("scripts/update-pot.sh"))
        .arg(&pot)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "update-pot.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = read(&pot);
    (dir, text)
}

#[test]
fn xgettext_extracts_every_marked_string_from_src_ui() {
    let marked = marked_strings();
    assert!(marked.len() > 100, "the scan found only {}", marked.len());
    let (_dir, pot) = fresh_pot();
    let entries = parse_po(&pot);
    let extracted: BTreeSet<String> = msgids(
        &entries
            .into_iter()
            .filter(|e| e.references.iter().any(|r| r.starts_with("src/ui/")))
            .collect::<Vec<_>>(),
    );
    let missed: Vec<_> = marked
        .iter()
        .filter(|(s, _)| !extracted.contains(*s))
        .collect();
    assert!(missed.is_empty(), "xgettext missed {missed:#?}");
    let extra: Vec<_> = extracted
        .iter()
        .filter(|s| !marked.contains_key(*s))
        .collect();
    assert!(
        extra.is_empty(),
        "xgettext found strings the scan did not: {extra:#?}"
    );
}

#[test]
fn every_source_with_marked_strings_is_in_potfiles() {
    let potfiles: BTreeSet<String> = list("POTFILES").into_iter().collect();
    for (path, src) in ui_sources() {
        let marks = lex(&src).windows(3).any(|w| {
            matches!(&w[0].0, Token::Ident(n) if n == "gettext" || n == "ngettext" || n == "gettext_f")
                && w[1].0 == Token::Punct('(')
                && matches!(w[2].0, Token::Str(_))
        });
        if marks {
            assert!(
                potfiles.contains(&path),
                "{path} has strings but is not in po/POTFILES"
            );
        }
    }
    for file in &potfiles {
        assert!(
            root().join(file).is_file(),
            "po/POTFILES names {file}, which does not exist"
        );
    }
}

#[test]
fn the_committed_template_is_up_to_date() {
    let (_dir, fresh) = fresh_pot();
    let fresh = msgids(&parse_po(&fresh));
    let committed = msgids(&parse_po(&read(&root().join("po/vireo.pot"))));
    let added: Vec<_> = fresh.difference(&committed).collect();
    let removed: Vec<_> = committed.difference(&fresh).collect();
    assert!(
        added.is_empty() && removed.is_empty(),
        "po/vireo.pot is stale; run scripts/update-pot.sh\nnew: {added:#?}\ngone: {removed:#?}"
    );
}

/// `{name}` placeholders in a string.
fn placeholders(s: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = s;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        found.insert(rest[open..open + close + 1].to_string());
        rest = &rest[open + close + 1..];
    }
    found
}

#[test]
fn every_language_translates_every_string_with_its_placeholders_and_mnemonics() {
    let pot = parse_po(&read(&root().join("po/vireo.pot")));
    for lang in list("LINGUAS") {
        let po = parse_po(&read(&root().join(format!("po/{lang}.po"))));
        let by_id: BTreeMap<_, _> = po.iter().map(|e| (e.msgid.as_str(), e)).collect();
        let mut problems = Vec::new();
        for want in &pot {
            let Some(have) = by_id.get(want.msgid.as_str()) else {
                problems.push(format!("missing: {:?}", want.msgid));
                continue;
            };
            if have.fuzzy {
                problems.push(format!("fuzzy: {:?}", want.msgid));
            }
            if have.msgstr.is_empty() || have.msgstr.iter().any(String::is_empty) {
                problems.push(format!("untranslated: {:?}", want.msgid));
                continue;
            }
            // A plural translation may use the plural form's `{n}`, as
            // languages with one form (zh_CN) do.
            let wanted = placeholders(&want.msgid);
            let allowed: BTreeSet<String> = wanted
                .iter()
                .cloned()
                .chain(want.plural.iter().flat_map(|p| placeholders(p)))
                .collect();
            for t in &have.msgstr {
                let used = placeholders(t);
                if !used.is_superset(&wanted) || !used.is_subset(&allowed) {
                    problems.push(format!("placeholders differ: {:?} → {t:?}", want.msgid));
                }
                let is_source = want.references.iter().any(|r| r.starts_with("src/"));
                let mnemonic = |s: &str| s.contains('_') && !s.contains('“');
                if is_source && mnemonic(&want.msgid) && !t.contains('_') {
                    problems.push(format!("mnemonic lost: {:?} → {t:?}", want.msgid));
                }
            }
        }
        assert!(
            problems.is_empty(),
            "po/{lang}.po:\n{}",
            problems.join("\n")
        );
    }
}

#[test]
fn msgfmt_check_accepts_every_po_file() {
    require_program("msgfmt");
    let dir = tempfile::tempdir().unwrap();
    let langs = list("LINGUAS");
    assert!(langs.contains(&"zh_CN".to_string()));
    for lang in langs {
        let out = Command::new("msgfmt")
            .args(["--check", "--statistics", "-o"])
            .arg(dir.path().join(format!("{lang}.mo")))
            .arg(root().join(format!("po/{lang}.po")))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "msgfmt --check po/{lang}.po: {stderr}"
        );
        assert!(
            !stderr.contains("fuzzy") && !stderr.contains("untranslated"),
            "po/{lang}.po: {stderr}"
        );
    }
}

#[test]
fn the_build_compiles_the_translations_where_the_window_finds_them() {
    for lang in list("LINGUAS") {
        let mo = root().join(format!("build/locale/{lang}/LC_MESSAGES/vireo.mo"));
        let po = root().join(format!("po/{lang}.po"));
        let mo_time = std::fs::metadata(&mo)
            .and_then(|m| m.modified())
            .unwrap_or_else(|e| panic!("{}: {e} (build.rs runs msgfmt)", mo.display()));
        let po_time = std::fs::metadata(&po).unwrap().modified().unwrap();
        assert!(mo_time >= po_time, "{} is older than its po", mo.display());
    }
}

// ---------------------------------------------------------------------
// Widget text that escapes translation.

/// Builder methods and setters whose string argument the user reads.
const TEXT_METHODS: &[&str] = &[
    "label",
    "set_label",
    "title",
    "set_title",
    "subtitle",
    "set_subtitle",
    "description",
    "set_description",
    "tooltip_text",
    "set_tooltip_text",
    "placeholder_text",
    "set_placeholder_text",
    "heading",
    "set_heading",
    "body",
    "set_body",
    "button_label",
    "set_button_label",
    "application_name",
    "developer_name",
    "comments",
    "set_text",
    "text",
    "add_response",
    "add_titled",
];

/// Literal arguments of widget-text calls, with where they are. For
/// `add_response(id, label)` and `add_titled(child, name, title)` only the
/// last argument is text. Literals with no letters (separators, markup
/// spacers) are not text to translate.
fn unmarked_widget_text(path: &str, src: &str) -> Vec<String> {
    let tokens = lex(src);
    let mut found = Vec::new();
    for (k, (token, line)) in tokens.iter().enumerate() {
        let literal = match token {
            Token::Ident(name) if TEXT_METHODS.contains(&name.as_str()) => {
                // `.name(` or `widget::name(`, opening a call.
                let called = k > 0
                    && matches!(tokens[k - 1].0, Token::Punct('.') | Token::Punct(':'))
                    && tokens.get(k + 1).map(|t| &t.0) == Some(&Token::Punct('('));
                if !called {
                    continue;
                }
                // Where the text argument starts: the first, or for
                // add_response/add_titled the last at depth 0.
                let mut j = k + 2;
                if name == "add_response" || name == "add_titled" {
                    let mut depth = 0;
                    for (m, (t, _)) in tokens.iter().enumerate().skip(k + 2) {
                        match t {
                            Token::Punct('(') => depth += 1,
                            Token::Punct(')') if depth == 0 => break,
                            Token::Punct(')') => depth -= 1,
                            Token::Punct(',') if depth == 0 => j = m + 1,
                            _ => {}
                        }
                    }
                }
                // Past `&` and `Some(`.
                loop {
                    match tokens.get(j).map(|t| &t.0) {
                        Some(Token::Punct('&')) => j += 1,
                        Some(Token::Ident(w))
                            if w == "Some"
                                && tokens.get(j + 1).map(|t| &t.0) == Some(&Token::Punct('(')) =>
                        {
                            j += 2
                        }
                        _ => break,
                    }
                }
                tokens.get(j).map(|t| &t.0)
            }
            // Toast::new("…"), WindowTitle::new("…", …)
            Token::Ident(name) if name == "new" => {
                let widget = k >= 3
                    && matches!(&tokens[k - 3].0, Token::Ident(w) if w == "Toast" || w == "WindowTitle" || w == "Label" || w == "Button")
                    && tokens.get(k + 1).map(|t| &t.0) == Some(&Token::Punct('('));
                if !widget {
                    continue;
                }
                tokens.get(k + 2).map(|t| &t.0)
            }
            _ => continue,
        };
        if let Some(Token::Str(s)) = literal {
            if s.chars().any(char::is_alphabetic) {
                found.push(format!("{path}:{line}: {s:?}"));
            }
        }
    }
    found
}

#[test]
fn widget_text_in_src_ui_is_marked_for_translation() {
    let mut found = Vec::new();
    for (path, src) in ui_sources() {
        found.extend(unmarked_widget_text(&path, &src));
    }
    assert!(
        found.is_empty(),
        "user-visible strings not wrapped in gettext:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_widget_text_check_catches_unmarked_strings() {
    let src = r#"
        let b = gtk::Button::builder().label("Start").build();
        b.set_tooltip_text(Some("Stop"));
        dialog.add_response("cancel", "_Cancel");
        let t = adw::Toast::new("Saved");
        let ok = gtk::Button::builder().label(&gettext("Start")).icon_name("go-symbolic").build();
        dialog.add_response("cancel", &gettext("_Cancel"));
        let sep = gtk::Label::builder().label(" · ").build();
        // .title("in a comment")
    "#;
    let found = unmarked_widget_text("x.rs", src);
    assert_eq!(found.len(), 4, "{found:#?}");
    assert!(found[0].contains("\"Start\""));
    assert!(found[1].contains("\"Stop\""));
    assert!(found[2].contains("\"_Cancel\""));
    assert!(found[3].contains("\"Saved\""));
}

#[test]
fn the_lexer_reads_rust_literals_as_rustc_does() {
    let src = "fn f<'a>(x: &'a str) { let c = '\"'; gettext(\"one \\\"two\\\"\\n\\\n   three\"); \
               ngettext(\"{n} VM\", \"{n} VMs\", n); let r = r#\"raw \"q\"\"#; /* gettext(\"no\") */ }";
    let tokens: Vec<Token> = lex(src).into_iter().map(|t| t.0).collect();
    let strings: Vec<&String> = tokens
        .iter()
        .filter_map(|t| match t {
            Token::Str(s) => Some(s),
            _ => None,
        })
        .collect();
    assert_eq!(
        strings,
        ["one \"two\"\nthree", "{n} VM", "{n} VMs", "raw \"q\""]
    );
}

// ---------------------------------------------------------------------
// The window in Chinese.

#[test]
fn the_window_speaks_simplified_chinese() {
    let locales = Command::new("locale").arg("-a").output().unwrap();
    let locales = String::from_utf8_lossy(&locales.stdout).to_lowercase();
    assert!(
        locales.contains("zh_cn.utf8"),
        "the zh_CN.UTF-8 locale is not generated; run `scripts/setup.sh test`"
    );
    let home = Home::new();
    let display = Display::start();
    let _app = App::start(&display, home.dir.path(), &[("LANG", "zh_CN.UTF-8")]);
    let dir = artifacts("i18n-zh-cn");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // Tesseract puts spaces between CJK glyphs.
        let seen = display.read_screen(&dir, "chi_sim");
        let compact: String = seen.chars().filter(|c| !c.is_whitespace()).collect();
        if compact.contains("没有虚拟机") {
            assert!(
                !seen.contains("No Virtual Machines"),
                "English is still shown:\n{seen}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the screen never showed 没有虚拟机; it read:\n{seen}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
