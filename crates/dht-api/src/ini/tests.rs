//! Unit tests of the INI reader.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::*;

#[derive(Debug, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Mode {
    Fast,
    Safe,
}

#[derive(Debug, Deserialize)]
struct File {
    name: Option<String>,
    main: Main,
    extra: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Main {
    count: i16,
    ratio: f32,
    mode: Mode,
    pair: (u8, char),
    #[serde(default)]
    words: Vec<String>,
    flag: Option<bool>,
}

#[test]
fn fields_take_the_type_they_ask_for() {
    let text = "\u{feff}name = peer one\nNAME2 = skipped\n[main]\ncount = -12\n\
                ratio = 0.5\nmode = safe\npair = 7 x\nwords = a,b  c\nflag = OFF\n\
                typo = 1\nother = 2\ntypo = 3\n[extra]\nA = 1\nb = two\n[unused]\nz\t= 1\n";
    let (file, unknown) = from_str::<File>(text).unwrap();
    assert_eq!(file.name.as_deref(), Some("peer one"));
    assert_eq!(file.main.count, -12);
    assert_eq!(file.main.ratio, 0.5);
    assert_eq!(file.main.mode, Mode::Safe);
    assert_eq!(file.main.pair, (7, 'x'));
    assert_eq!(file.main.words, ["a", "b", "c"]);
    assert_eq!(file.main.flag, Some(false));
    // A section read as a map keeps every key; one read into a struct names the rest.
    let extra = file.extra.unwrap();
    assert_eq!(extra.get("a").map(String::as_str), Some("1"));
    assert_eq!(extra.get("b").map(String::as_str), Some("two"));
    assert_eq!(unknown, ["main.typo", "main.other"]);
}

#[test]
fn errors_name_the_dotted_key() {
    let base = "[main]\ncount = 1\nratio = 1\npair = 1 a\n";
    let mode = from_str::<File>(&format!("{base}mode = slow\n")).unwrap_err();
    assert_eq!(mode.key.as_deref(), Some("main.mode"));
    assert!(
        mode.reason.starts_with("\"slow\": unknown variant"),
        "{mode}"
    );
    let count = from_str::<File>("[main]\ncount = 40000\n").unwrap_err();
    assert_eq!(
        count.to_string(),
        "key `main.count`: \"40000\": expected a whole number from -32768 to 32767"
    );
    let missing = from_str::<File>(&format!("{base}[extra]\n")).unwrap_err();
    assert_eq!(
        missing.to_string(),
        "key `main.mode`: required, but missing"
    );
    let no_section = from_str::<File>("name = x\n").unwrap_err();
    assert_eq!(
        no_section.to_string(),
        "key `main`: the file has no [main] section"
    );
}
