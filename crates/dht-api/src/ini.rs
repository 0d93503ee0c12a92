//! The VoidPhone shared INI file, read into the same serde structs as the TOML file.
//!
//! All modules of one VoidPhone peer share one INI file: global keys before the first
//! section (`hostkey`), then one section per module (`[dht]`, `[gossip]`, ...).
//! [`from_str`] deserialises a struct from such a file: the struct's fields name the
//! global keys and the sections it reads. Other global keys and other sections belong to
//! other modules and are skipped silently. Inside a section it reads, keys its struct
//! does not have are skipped too, but returned by name, so that the caller can warn about
//! a typo without refusing a file that other modules share.
//!
//! INI values are untyped text. Each is converted to the type its field asks for, so the
//! keys, their types and their checks stay written once, in the serde structs:
//! numbers are parsed, booleans are `true`/`false` (or `yes`/`no`, `on`/`off`, `1`/`0`,
//! in any case, as Python's configparser reads them), a list is its items separated by
//! commas or whitespace (so it may continue on indented lines), an empty value of an
//! optional field means the field is absent, and addresses and paths come from the text.
//!
//! Syntax: `key = value` or `key: value`; comments are whole lines starting with `;` or
//! `#`; a value may be quoted (`"..."`) and continue on indented lines; backslashes are
//! plain characters (Windows paths stay intact). Key names are case-insensitive, as in
//! Python's configparser; section names are not. A key set twice in one section is an
//! error: it is ambiguous which one the other modules read.

use std::cell::RefCell;
use std::fmt;

use ini::{Ini, ParseOption};
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor,
};

/// Why an INI file cannot be read into the struct.
#[derive(Debug)]
pub(crate) struct IniError {
    /// The key, dotted with its section (`dht.k`), or a section name alone; `None` for a
    /// syntax error.
    pub(crate) key: Option<String>,
    /// Line and column of a syntax error, as the parser reports them.
    pub(crate) position: Option<(usize, usize)>,
    /// Why, in one line.
    pub(crate) reason: String,
    /// Set by `missing_field` until the field's name has been placed: a required field of
    /// the top-level struct is a missing section.
    missing: bool,
}

impl fmt::Display for IniError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((line, column)) = self.position {
            write!(f, "line {line}, column {column}: ")?;
        }
        if let Some(key) = &self.key {
            write!(f, "key `{key}`: ")?;
        }
        f.write_str(&self.reason)
    }
}

impl std::error::Error for IniError {}

impl de::Error for IniError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        IniError {
            key: None,
            position: None,
            reason: msg.to_string(),
            missing: false,
        }
    }

    fn missing_field(field: &'static str) -> Self {
        IniError {
            key: Some(field.to_string()),
            position: None,
            reason: "required, but missing".into(),
            missing: true,
        }
    }
}

impl IniError {
    /// Names the key of a value that could not be converted, quoting the value.
    fn at_value(mut self, key: &str, value: &str) -> Self {
        if self.key.is_none() {
            self.key = Some(key.to_string());
            self.reason = format!("{value:?}: {}", self.reason);
        }
        self
    }

    /// Places an error from inside a section under the section's name.
    fn in_section(mut self, section: &str) -> Self {
        self.key = Some(match self.key.take() {
            Some(key) => format!("{section}.{key}"),
            None => section.to_string(),
        });
        self.missing = false;
        self
    }
}

/// Parses `text` and deserialises `T` from it. Returns `T` and the keys of the sections
/// `T` reads that it does not know (`section.key`), in file order, for warnings.
pub(crate) fn from_str<T: DeserializeOwned>(text: &str) -> Result<(T, Vec<String>), IniError> {
    let options = ParseOption {
        enabled_escape: false,
        enabled_indented_mutiline_value: true,
        ..ParseOption::default()
    };
    // A byte order mark, as some Windows editors write, is not part of the first key.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    check_lines(text)?;
    let ini = Ini::load_from_str_opt(text, options).map_err(|e| {
        // An unclosed quote makes the parser read to the end of the file.
        let reason = if e.msg.ends_with("found EOF.") {
            "the file ends inside a value: a quote is not closed".to_string()
        } else {
            e.msg.into_owned()
        };
        IniError {
            key: None,
            position: Some((e.line, e.col)),
            reason,
            missing: false,
        }
    })?;
    let document = Document::new(&ini);
    let unknown = RefCell::new(Vec::new());
    let value = T::deserialize(Root {
        document: &document,
        unknown: &unknown,
    })
    .map_err(|mut e| {
        if e.missing {
            e.missing = false;
            if let Some(key) = &e.key {
                e.reason = format!("the file has no [{key}] section");
            }
        }
        e
    })?;
    Ok((value, unknown.into_inner()))
}

/// Finds the two common slips the parser would report only at the end of the file, at
/// their own line: a section header without `]`, and a line that is neither a comment,
/// a section header, `key = value`, nor an indented continuation of a value.
fn check_lines(text: &str) -> Result<(), IniError> {
    for (index, line) in text.lines().enumerate() {
        let error = |reason: String| IniError {
            key: None,
            position: Some((index + 1, 1)),
            reason,
            missing: false,
        };
        let trimmed = line.trim();
        if trimmed.is_empty() || line.starts_with([' ', '\t', ';', '#']) {
            continue;
        }
        if trimmed.starts_with('[') {
            if !trimmed.contains(']') {
                return Err(error(format!(
                    "section header {trimmed:?} has no closing `]`"
                )));
            }
        } else if !trimmed.contains(['=', ':']) {
            return Err(error(format!(
                "expected `key = value`, a [section] or a comment, found {trimmed:?}"
            )));
        }
    }
    Ok(())
}

/// The file's keys, grouped: global ones, and each section's (a section that appears
/// twice has its keys merged), every key name in lower case.
struct Document<'a> {
    globals: Vec<(String, &'a str)>,
    sections: Vec<(&'a str, Vec<(String, &'a str)>)>,
}

impl<'a> Document<'a> {
    fn new(ini: &'a Ini) -> Self {
        let mut document = Document {
            globals: Vec::new(),
            sections: Vec::new(),
        };
        for (name, properties) in ini {
            let keys = properties
                .iter()
                .map(|(key, value)| (key.to_ascii_lowercase(), value));
            match name {
                None => document.globals.extend(keys),
                Some(name) => match document.sections.iter_mut().find(|(n, _)| *n == name) {
                    Some((_, section)) => section.extend(keys),
                    None => document.sections.push((name, keys.collect())),
                },
            }
        }
        document
    }

    fn section(&self, name: &str) -> Option<&[(String, &'a str)]> {
        self.sections
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, keys)| keys.as_slice())
    }
}

/// The one value of `key` among `keys`, or an error when it is set twice.
fn single<'a>(keys: &[(String, &'a str)], key: &str) -> Result<Option<&'a str>, IniError> {
    let mut values = keys.iter().filter(|(k, _)| k == key).map(|(_, v)| *v);
    let first = values.next();
    if values.next().is_some() {
        return Err(IniError {
            key: Some(key.to_string()),
            position: None,
            reason: "set more than once".into(),
            missing: false,
        });
    }
    Ok(first)
}

/// What a struct field is read from.
enum Item<'a> {
    Value(&'a str),
    Section(&'a str, &'a [(String, &'a str)]),
}

/// The top level: a struct whose fields are global keys and sections.
struct Root<'a> {
    document: &'a Document<'a>,
    unknown: &'a RefCell<Vec<String>>,
}

impl<'de> de::Deserializer<'de> for Root<'_> {
    type Error = IniError;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, IniError> {
        Err(de::Error::custom(
            "an INI file can only be read into a struct",
        ))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, IniError> {
        let mut items = Vec::new();
        for &field in fields {
            if let Some(keys) = self.document.section(field) {
                items.push((field.to_string(), Item::Section(field, keys)));
            } else if let Some(value) = single(&self.document.globals, field)? {
                items.push((field.to_string(), Item::Value(value)));
            }
        }
        visitor.visit_map(Fields::new(items, self.unknown))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
        byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
        identifier ignored_any
    }
}

/// One section, read into a struct (unknown keys skipped and recorded) or a map.
struct Section<'a> {
    name: &'a str,
    keys: &'a [(String, &'a str)],
    unknown: &'a RefCell<Vec<String>>,
}

impl<'de> de::Deserializer<'de> for Section<'_> {
    type Error = IniError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, IniError> {
        self.deserialize_map(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, IniError> {
        let mut items = Vec::new();
        for (key, _) in self.keys {
            if !items.iter().any(|(k, _)| k == key) {
                let value = single(self.keys, key)?.unwrap_or_default();
                items.push((key.clone(), Item::Value(value)));
            }
        }
        visitor.visit_map(Fields::new(items, self.unknown))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, IniError> {
        let mut items = Vec::new();
        for &field in fields {
            if let Some(value) = single(self.keys, field)? {
                items.push((field.to_string(), Item::Value(value)));
            }
        }
        let mut unknown = self.unknown.borrow_mut();
        for (key, _) in self.keys {
            let dotted = format!("{}.{key}", self.name);
            if !fields.contains(&key.as_str()) && !unknown.contains(&dotted) {
                unknown.push(dotted);
            }
        }
        drop(unknown);
        visitor.visit_map(Fields::new(items, self.unknown))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, IniError> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, IniError> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
        byte_buf unit unit_struct seq tuple tuple_struct enum identifier ignored_any
    }
}

/// The fields of a struct (or entries of a map), each a value or a section.
struct Fields<'a> {
    items: std::vec::IntoIter<(String, Item<'a>)>,
    next: Option<(String, Item<'a>)>,
    unknown: &'a RefCell<Vec<String>>,
}

impl<'a> Fields<'a> {
    fn new(items: Vec<(String, Item<'a>)>, unknown: &'a RefCell<Vec<String>>) -> Self {
        Fields {
            items: items.into_iter(),
            next: None,
            unknown,
        }
    }
}

impl<'de> MapAccess<'de> for Fields<'_> {
    type Error = IniError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, IniError> {
        let Some((key, item)) = self.items.next() else {
            return Ok(None);
        };
        let name = seed.deserialize(key.clone().into_deserializer())?;
        self.next = Some((key, item));
        Ok(Some(name))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, IniError> {
        match self.next.take() {
            Some((key, Item::Value(value))) => seed
                .deserialize(Value(value))
                .map_err(|e| e.at_value(&key, value)),
            Some((_, Item::Section(name, keys))) => seed
                .deserialize(Section {
                    name,
                    keys,
                    unknown: self.unknown,
                })
                .map_err(|e| e.in_section(name)),
            None => Err(de::Error::custom("a value was asked for before its key")),
        }
    }
}

/// One value's text, converted to whatever type its field asks for.
struct Value<'a>(&'a str);

impl Value<'_> {
    fn parse<T: std::str::FromStr>(
        &self,
        expected: impl FnOnce() -> String,
    ) -> Result<T, IniError> {
        self.0
            .parse()
            .map_err(|_| de::Error::custom(format!("expected {}", expected())))
    }
}

/// Parses a whole number of the type the visitor wants, naming its range on failure.
macro_rules! integers {
    ($($method:ident $visit:ident $ty:ty),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, IniError> {
            visitor.$visit(self.parse::<$ty>(|| {
                whole_number(<$ty>::MIN.to_string(), <$ty>::MAX.to_string())
            })?)
        }
    )*};
}

/// What a whole number field takes: its range when that is short to read (`0 to 255`),
/// else only its sign (a `u64` of a duration).
fn whole_number(min: String, max: String) -> String {
    match (min.as_str(), max.len() > 10) {
        ("0", true) => "a whole number, 0 or more".into(),
        (_, true) => "a whole number".into(),
        _ => format!("a whole number from {min} to {max}"),
    }
}

impl<'de> de::Deserializer<'de> for Value<'_> {
    type Error = IniError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, IniError> {
        visitor.visit_str(self.0)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, IniError> {
        match self.0.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => visitor.visit_bool(true),
            "false" | "no" | "off" | "0" => visitor.visit_bool(false),
            _ => Err(de::Error::custom(
                "expected true or false (or yes/no, on/off, 1/0)",
            )),
        }
    }

    integers! {
        deserialize_i8 visit_i8 i8,
        deserialize_i16 visit_i16 i16,
        deserialize_i32 visit_i32 i32,
        deserialize_i64 visit_i64 i64,
        deserialize_i128 visit_i128 i128,
        deserialize_u8 visit_u8 u8,
        deserialize_u16 visit_u16 u16,
        deserialize_u32 visit_u32 u32,
        deserialize_u64 visit_u64 u64,
        deserialize_u128 visit_u128 u128,
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, IniError> {
        visitor.visit_f32(self.parse(|| "a number".into())?)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, IniError> {
        visitor.visit_f64(self.parse(|| "a number".into())?)
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, IniError> {
        visitor.visit_char(self.parse(|| "one character".into())?)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, IniError> {
        if self.0.is_empty() {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, IniError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, IniError> {
        visitor.visit_seq(List(
            self.0
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|item| !item.is_empty()),
        ))
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, IniError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, IniError> {
        visitor.visit_enum(self.0.into_deserializer())
    }

    serde::forward_to_deserialize_any! {
        str string bytes byte_buf unit unit_struct tuple_struct map struct identifier
        ignored_any
    }
}

/// The items of a list value.
struct List<I>(I);

impl<'de, 'a, I: Iterator<Item = &'a str>> SeqAccess<'de> for List<I> {
    type Error = IniError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, IniError> {
        self.0
            .next()
            .map(|item| seed.deserialize(Value(item)))
            .transpose()
    }
}

#[cfg(test)]
mod tests;
