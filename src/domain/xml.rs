//! An ordered XML element tree: what the domain model reads and edits.
//!
//! Like virt-manager's `XMLBuilder`, the definition is kept as the tree it
//! was read from, so elements and attributes Vireo does not model come back
//! out exactly (same order, same values); the typed accessors in the other
//! files read and write single attributes and children of this tree.
//!
//! Output follows libvirt's own formatting (`virBuffer` in
//! `src/util/virbuffer.c`): two-space indentation, single-quoted attributes,
//! `<empty/>` elements, text-only elements on one line, and the five XML
//! special characters escaped in both text and attributes.

use std::fmt::Write as _;

use quick_xml::events::Event;
use quick_xml::Reader;

use super::DomainError;

/// A place in the source text, 1-based; columns count characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub line: u32,
    pub column: u32,
}

impl std::fmt::Display for Pos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// One child of an element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Element(Element),
    /// Character data with entities resolved.
    Text(String),
    /// `<![CDATA[...]]>` content, written back as CDATA.
    CData(String),
    /// `<!--...-->` content.
    Comment(String),
    /// `<?target data?>` content.
    ProcessingInstruction(String),
}

/// An element with its attributes and children in document order.
#[derive(Debug, Clone, Default)]
pub struct Element {
    /// The qualified name as written (`disk`, `vireo:meta`).
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Node>,
    /// Where the start tag was in the text it came from; `None` for built elements.
    pub pos: Option<Pos>,
}

/// Positions are where an element came from, not what it is.
impl PartialEq for Element {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.attrs == other.attrs && self.children == other.children
    }
}
impl Eq for Element {}

impl Element {
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }

    /// Builder-style: adds an attribute.
    pub fn with_attr(mut self, name: &str, value: impl Into<String>) -> Self {
        self.set_attr(name, value);
        self
    }

    /// Builder-style: sets the text content.
    pub fn with_text(mut self, text: impl Into<String>) -> Self {
        self.set_text(text);
        self
    }

    /// Builder-style: appends a child element.
    pub fn with_child(mut self, child: Element) -> Self {
        self.children.push(Node::Element(child));
        self
    }

    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Sets an attribute, in place when it exists (so attribute order is kept).
    pub fn set_attr(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        match self.attrs.iter_mut().find(|(n, _)| n == name) {
            Some((_, v)) => *v = value,
            None => self.attrs.push((name.to_string(), value)),
        }
    }

    /// Sets or removes an attribute.
    pub fn set_opt_attr(&mut self, name: &str, value: Option<impl Into<String>>) {
        match value {
            Some(v) => self.set_attr(name, v),
            None => self.remove_attr(name),
        }
    }

    pub fn remove_attr(&mut self, name: &str) {
        self.attrs.retain(|(n, _)| n != name);
    }

    /// Child elements in order.
    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            _ => None,
        })
    }

    pub fn elements_mut(&mut self) -> impl Iterator<Item = &mut Element> {
        self.children.iter_mut().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            _ => None,
        })
    }

    /// The first child element called `name`.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.elements().find(|e| e.name == name)
    }

    pub fn child_mut(&mut self, name: &str) -> Option<&mut Element> {
        self.elements_mut().find(|e| e.name == name)
    }

    /// All child elements called `name`.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> {
        self.elements().filter(move |e| e.name == name)
    }

    /// The text of this element (text and CDATA children joined).
    pub fn text(&self) -> String {
        let mut out = String::new();
        for node in &self.children {
            if let Node::Text(t) | Node::CData(t) = node {
                out.push_str(t);
            }
        }
        out
    }

    /// The text of child `name`, trimmed.
    pub fn child_text(&self, name: &str) -> Option<String> {
        self.child(name).map(|c| c.text().trim().to_string())
    }

    /// Replaces the text of this element, keeping child elements and comments.
    pub fn set_text(&mut self, text: impl Into<String>) {
        self.children
            .retain(|n| !matches!(n, Node::Text(_) | Node::CData(_)));
        self.children.insert(0, Node::Text(text.into()));
    }

    /// The child `name`, created when missing. A new child goes before the
    /// first existing child that `order` (the schema's order of this
    /// element's children, as libvirt writes them) puts after it, otherwise
    /// at the end.
    pub fn ensure_child(&mut self, name: &str, order: &[&str]) -> &mut Element {
        let index = match self.children.iter().position(|n| is_named(n, name)) {
            Some(i) => i,
            None => {
                let i = self.insertion_index(name, order);
                self.children.insert(i, Node::Element(Element::new(name)));
                i
            }
        };
        match &mut self.children[index] {
            Node::Element(e) => e,
            _ => unreachable!("index found by is_named"),
        }
    }

    /// Inserts `child` after the last child of the same name, or where
    /// `order` puts it.
    pub fn insert_child(&mut self, child: Element, order: &[&str]) {
        let index = match self.children.iter().rposition(|n| is_named(n, &child.name)) {
            Some(i) => i + 1,
            None => self.insertion_index(&child.name, order),
        };
        self.children.insert(index, Node::Element(child));
    }

    fn insertion_index(&self, name: &str, order: &[&str]) -> usize {
        let rank = order.iter().position(|n| *n == name);
        if let Some(rank) = rank {
            let later = &order[rank + 1..];
            if let Some(i) = self
                .children
                .iter()
                .position(|n| matches!(n, Node::Element(e) if later.contains(&e.name.as_str())))
            {
                return i;
            }
        }
        self.children.len()
    }

    /// Sets child `name`'s text, creating it where `order` says; `None` removes it.
    pub fn set_child_text(&mut self, name: &str, text: Option<&str>, order: &[&str]) {
        match text {
            Some(t) => self.ensure_child(name, order).set_text(t),
            None => self.remove_children(name),
        }
    }

    pub fn remove_children(&mut self, name: &str) {
        self.children.retain(|n| !is_named(n, name));
    }

    /// Parses a document whose root element is returned. The XML
    /// declaration, comments and processing instructions outside the root
    /// are dropped, as libvirt does.
    pub fn parse(xml: &str) -> Result<Element, DomainError> {
        parse(xml)
    }

    /// The element as libvirt formats it, ending with a newline.
    pub fn to_xml(&self) -> String {
        let mut out = String::new();
        write_element(&mut out, self, 0);
        out
    }
}

fn is_named(node: &Node, name: &str) -> bool {
    matches!(node, Node::Element(e) if e.name == name)
}

/// Line and column of byte `offset` in `text`.
pub(crate) fn position_of(text: &str, offset: usize) -> Pos {
    let offset = offset.min(text.len());
    let offset = (0..=offset)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    Pos {
        line: line as u32,
        column: column as u32,
    }
}

fn syntax(text: &str, offset: usize, message: impl Into<String>) -> DomainError {
    let pos = position_of(text, offset);
    DomainError::Syntax {
        line: pos.line,
        column: pos.column,
        message: message.into(),
    }
}

fn describe(error: &quick_xml::Error) -> String {
    use quick_xml::errors::{IllFormedError, SyntaxError};
    match error {
        quick_xml::Error::IllFormed(IllFormedError::MismatchedEndTag { expected, found }) => {
            format!("expected </{expected}>, found </{found}>")
        }
        quick_xml::Error::IllFormed(IllFormedError::UnmatchedEndTag(name)) => {
            format!("</{name}> closes an element that is not open")
        }
        quick_xml::Error::Syntax(SyntaxError::UnclosedTag) => {
            "the text ends inside a tag (missing '>')".into()
        }
        quick_xml::Error::Syntax(
            SyntaxError::UnclosedSingleQuotedAttributeValue
            | SyntaxError::UnclosedDoubleQuotedAttributeValue,
        ) => "an attribute value has no closing quote".into(),
        quick_xml::Error::Syntax(SyntaxError::UnclosedComment) => "a comment is not closed".into(),
        quick_xml::Error::Escape(e) => format!("bad character or entity reference: {e}"),
        other => other.to_string(),
    }
}

/// Far deeper than any definition (libvirt's go about six levels); the
/// writer recurses, so a hostile file must not nest without bound.
const MAX_DEPTH: usize = 256;

fn parse(xml: &str) -> Result<Element, DomainError> {
    let mut reader = Reader::from_str(xml);
    reader.config_mut().check_end_names = true;
    reader.config_mut().check_comments = true;
    reader.config_mut().trim_text(false);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let start = reader.buffer_position() as usize;
        let event = match reader.read_event() {
            Ok(event) => event,
            Err(e) => return Err(syntax(xml, reader.error_position() as usize, describe(&e))),
        };
        let pos = position_of(xml, start);
        match event {
            Event::Start(tag) => {
                let element = start_element(xml, start, &tag, &stack, &root)?;
                if stack.len() >= MAX_DEPTH {
                    return Err(syntax(
                        xml,
                        start,
                        format!("elements are nested more than {MAX_DEPTH} deep"),
                    ));
                }
                stack.push(element);
            }
            Event::Empty(tag) => {
                let element = start_element(xml, start, &tag, &stack, &root)?;
                attach(&mut stack, &mut root, element);
            }
            Event::End(_) => {
                // quick-xml checked the name matches.
                if let Some(element) = stack.pop() {
                    attach(&mut stack, &mut root, element);
                }
            }
            Event::Text(text) => {
                let content = text.xml10_content();
                push_text(&mut stack, xml, start, &content)?;
            }
            Event::GeneralRef(reference) => {
                let resolved = match reference.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    Ok(None) => {
                        let name = reference.xml10_content();
                        match quick_xml::escape::resolve_predefined_entity(&name) {
                            Some(s) => s.to_string(),
                            None => {
                                return Err(syntax(xml, start, format!("unknown entity &{name};")))
                            }
                        }
                    }
                    Err(e) => {
                        return Err(syntax(xml, start, format!("bad character reference: {e}")))
                    }
                };
                push_text(&mut stack, xml, start, &resolved)?;
            }
            Event::CData(data) => {
                let text = data.to_string();
                match stack.last_mut() {
                    Some(parent) => parent.children.push(Node::CData(text)),
                    None => return Err(syntax(xml, start, "CDATA outside the root element")),
                }
            }
            Event::Comment(comment) => {
                if let Some(parent) = stack.last_mut() {
                    parent
                        .children
                        .push(Node::Comment(comment.xml10_content().into_owned()));
                }
            }
            Event::PI(pi) => {
                if let Some(parent) = stack.last_mut() {
                    parent
                        .children
                        .push(Node::ProcessingInstruction(pi.to_string()));
                }
            }
            Event::Decl(_) | Event::DocType(_) => {
                if root.is_some() || !stack.is_empty() {
                    return Err(syntax(xml, start, "a declaration inside the document"));
                }
            }
            Event::Eof => {
                if let Some(open) = stack.last() {
                    let opened = open.pos.unwrap_or(pos);
                    return Err(syntax(
                        xml,
                        xml.len(),
                        format!(
                            "the text ends before </{}> (<{}> opened at {opened})",
                            open.name, open.name
                        ),
                    ));
                }
                return root.ok_or_else(|| syntax(xml, xml.len(), "there is no root element"));
            }
        }
    }
}

/// An element from its start tag at byte `start`.
fn start_element(
    xml: &str,
    start: usize,
    tag: &quick_xml::events::BytesStart<'_>,
    stack: &[Element],
    root: &Option<Element>,
) -> Result<Element, DomainError> {
    let name = tag.name().as_ref().to_string();
    let mut element = Element::new(name);
    element.pos = Some(position_of(xml, start));
    for attr in tag.attributes() {
        let attr = attr.map_err(|e| {
            syntax(
                xml,
                start,
                format!("<{}>: bad attribute: {e}", element.name),
            )
        })?;
        let key = attr.key.as_ref().to_string();
        let value = attr
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|e| syntax(xml, start, format!("<{}> {key}=: {e}", element.name)))?;
        element.attrs.push((key, value.into_owned()));
    }
    if root.is_some() && stack.is_empty() {
        return Err(syntax(
            xml,
            start,
            format!("a second root element <{}>", element.name),
        ));
    }
    Ok(element)
}

fn attach(stack: &mut [Element], root: &mut Option<Element>, mut element: Element) {
    drop_layout_whitespace(&mut element);
    match stack.last_mut() {
        Some(parent) => parent.children.push(Node::Element(element)),
        None => *root = Some(element),
    }
}

/// Whitespace between child elements is layout, not content (libvirt
/// re-indents on output too): dropping it makes two trees that differ only
/// in indentation equal. Text mixed with elements is content and is kept.
fn drop_layout_whitespace(element: &mut Element) {
    let structured = element
        .children
        .iter()
        .any(|n| !matches!(n, Node::Text(_) | Node::CData(_)));
    let only_blank_text = element.children.iter().all(|n| match n {
        Node::Text(t) => t.trim().is_empty(),
        Node::CData(_) => false,
        _ => true,
    });
    if structured && only_blank_text {
        element.children.retain(|n| !matches!(n, Node::Text(_)));
    }
}

fn push_text(
    stack: &mut [Element],
    xml: &str,
    start: usize,
    text: &str,
) -> Result<(), DomainError> {
    match stack.last_mut() {
        Some(parent) => {
            // Entity references split text into several events; join them.
            match parent.children.last_mut() {
                Some(Node::Text(prev)) => prev.push_str(text),
                _ => parent.children.push(Node::Text(text.to_string())),
            }
            Ok(())
        }
        None if text.trim().is_empty() => Ok(()),
        None => {
            let skipped = text.len() - text.trim_start().len();
            Err(syntax(
                xml,
                start + skipped,
                "text outside the root element",
            ))
        }
    }
}

/// Escapes the characters libvirt escapes (`virBufferEscapeString`);
/// newlines and tabs in attributes become character references so they
/// survive attribute-value normalisation.
fn escape(out: &mut String, text: &str, attribute: bool) {
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            '\n' if attribute => out.push_str("&#10;"),
            '\t' if attribute => out.push_str("&#9;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
}

fn write_element(out: &mut String, element: &Element, depth: usize) {
    let indent = "  ".repeat(depth);
    out.push_str(&indent);
    write_inline_start(out, element);
    let has_structure = element
        .children
        .iter()
        .any(|n| !matches!(n, Node::Text(_) | Node::CData(_)));
    let has_text = element.children.iter().any(|n| match n {
        Node::Text(t) => !t.trim().is_empty(),
        Node::CData(_) => true,
        _ => false,
    });
    if element.children.is_empty() || (!has_structure && !has_text && element.text().is_empty()) {
        out.push_str("/>\n");
        return;
    }
    out.push('>');
    if !has_structure {
        // Text only: keep it exactly, on the tag's line.
        write_children_inline(out, element);
    } else if has_text {
        // Mixed content: indentation would change the text, so write it as is.
        write_children_inline(out, element);
    } else {
        out.push('\n');
        for node in &element.children {
            match node {
                Node::Element(child) => write_element(out, child, depth + 1),
                Node::Comment(c) => {
                    let _ = writeln!(out, "{indent}  <!--{c}-->");
                }
                Node::ProcessingInstruction(p) => {
                    let _ = writeln!(out, "{indent}  <?{p}?>");
                }
                Node::Text(_) | Node::CData(_) => {}
            }
        }
        out.push_str(&indent);
    }
    let _ = writeln!(out, "</{}>", element.name);
}

fn write_inline_start(out: &mut String, element: &Element) {
    out.push('<');
    out.push_str(&element.name);
    for (name, value) in &element.attrs {
        let _ = write!(out, " {name}='");
        escape(out, value, true);
        out.push('\'');
    }
}

fn write_children_inline(out: &mut String, element: &Element) {
    for node in &element.children {
        match node {
            Node::Text(t) => escape(out, t, false),
            Node::CData(t) => {
                let _ = write!(out, "<![CDATA[{t}]]>");
            }
            Node::Comment(c) => {
                let _ = write!(out, "<!--{c}-->");
            }
            Node::ProcessingInstruction(p) => {
                let _ = write!(out, "<?{p}?>");
            }
            Node::Element(child) => {
                write_inline_start(out, child);
                if child.children.is_empty() {
                    out.push_str("/>");
                } else {
                    out.push('>');
                    write_children_inline(out, child);
                    let _ = write!(out, "</{}>", child.name);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_order_and_unknowns() {
        let xml = "<a x=\"1\" b='2'>\n <z/><y q='&lt;&amp;'>t &amp; u</y>\n<!-- hi --><ns:m xmlns:ns='urn:x'><ns:k>v</ns:k></ns:m></a>";
        let element = Element::parse(xml).unwrap();
        assert_eq!(
            element.to_xml(),
            "<a x='1' b='2'>\n  <z/>\n  <y q='&lt;&amp;'>t &amp; u</y>\n  <!-- hi -->\n  <ns:m xmlns:ns='urn:x'>\n    <ns:k>v</ns:k>\n  </ns:m>\n</a>\n"
        );
        let again = Element::parse(&element.to_xml()).unwrap();
        assert_eq!(again, element);
    }

    #[test]
    fn text_is_kept_exactly() {
        let element = Element::parse("<d>  two\n lines &#x41; </d>").unwrap();
        assert_eq!(element.text(), "  two\n lines A ");
        assert_eq!(element.to_xml(), "<d>  two\n lines A </d>\n");
    }

    #[test]
    fn mixed_content_is_not_reindented() {
        let element = Element::parse("<p>a <b>bold</b> word</p>").unwrap();
        assert_eq!(element.to_xml(), "<p>a <b>bold</b> word</p>\n");
    }

    #[test]
    fn hostile_nesting_is_refused() {
        let deep = "<a>".repeat(100_000);
        let err = Element::parse(&deep).unwrap_err().to_string();
        assert!(err.contains("nested more than 256 deep"), "{err}");
        let fine = format!("{}{}", "<a>".repeat(200), "</a>".repeat(200));
        assert!(Element::parse(&fine).is_ok());
    }

    #[test]
    fn positions_are_one_based() {
        assert_eq!(position_of("ab\ncd", 0), Pos { line: 1, column: 1 });
        assert_eq!(position_of("ab\ncd", 4), Pos { line: 2, column: 2 });
        assert_eq!(position_of("é\nx", 3), Pos { line: 2, column: 1 });
        let e = Element::parse("<a>\n  <b/>\n</a>").unwrap();
        assert_eq!(e.child("b").unwrap().pos, Some(Pos { line: 2, column: 3 }));
    }

    #[test]
    fn ensure_child_follows_schema_order() {
        let mut e = Element::parse("<domain><name>x</name><vcpu>1</vcpu></domain>").unwrap();
        e.ensure_child("memory", &["name", "uuid", "memory", "vcpu"])
            .set_text("5");
        let names: Vec<_> = e.elements().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["name", "memory", "vcpu"]);
    }
}
