//! What a leaf's type allows, in words, read from libyang's compiled schema:
//! the value errors of an edit name the node, the value and this ("priority
//! must be 1..254, not "255"") instead of libyang's generic "Unsatisfied
//! range - value "255" is out of the allowed range." or a whole regular
//! expression. Ranges, lengths, patterns, enums and unions come from the
//! YANG modules through libyang; no leaf has a message of its own here. A
//! restriction that carries its own `error-message` keeps it: the module's
//! author wrote it for the operator.
//!
//! yang2 exposes a leaf's type only by its base type and typedef name; the
//! restrictions are read from libyang's `lysc_type_*` structures (hence the
//! `unsafe`, each block reading a compiled schema that lives as long as the
//! context).

#![allow(unsafe_code)]

use std::ffi::CStr;
use std::os::raw::c_char;

use yang2::data::{Data, DataTree};
use yang2::ffi;
use yang2::schema::{DataValueType, SchemaLeafType, SchemaNode, SchemaPathFormat};
use yang2::utils::Binding;

use crate::yang::context;

/// Longest value an error message repeats (a peer may send megabytes).
const VALUE_SHOWN: usize = 48;

/// The message for `value`, refused by libyang for `schema` (a leaf,
/// leaf-list or list key) with `ly_message`: libyang's own when it is a
/// restriction's `error-message`, else `"<node> must be <allowed>, not
/// "<value>""`.
pub fn value_message(schema: &SchemaNode<'_>, value: &str, ly_message: &str) -> String {
    let Some(ty) = schema.leaf_type() else {
        return ly_message.to_string();
    };
    let raw = ty.as_raw();
    if own_messages(raw).iter().any(|m| m == ly_message) {
        return ly_message.to_string();
    }
    let mut allowed = describe(raw);
    if let Some(units) = schema.units() {
        if is_number(raw) {
            allowed = format!("{allowed} {units}");
        }
    }
    format!(
        "{} must be {allowed}, not \"{}\"",
        schema.name(),
        shown(value)
    )
}

/// A value error libyang met while parsing data (a startup file, a
/// datastore copy), phrased as the edit's: libyang names the node by its
/// data path and gives the value only inside its message, as the first
/// quoted text; that text is taken only when libyang refuses it for the
/// node, else the message stays libyang's.
pub fn parse_error_message(data_path: &str, ly_message: &str) -> Option<String> {
    // only a value error quotes the value first ("Unsatisfied range -
    // value "0" ...", "Invalid enumeration value "x"."); "Unexpected data
    // state node "state"" quotes a node name
    if !(ly_message.starts_with("Unsatisfied ") || ly_message.starts_with("Invalid ")) {
        return None;
    }
    let schema = context().find_path(&without_predicates(data_path)).ok()?;
    let value = ly_message.split('"').nth(1)?;
    if !refuses(&schema, value) {
        return None;
    }
    Some(value_message(&schema, value, ly_message))
}

/// A data path without its predicates (`/m:a/b[k='x/y']/c` is `/m:a/b/c`):
/// the schema node's path.
fn without_predicates(path: &str) -> std::string::String {
    let mut out = std::string::String::with_capacity(path.len());
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    for c in path.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') if depth > 0 => quote = Some(c),
            (None, '[') => depth += 1,
            (None, ']') => depth = depth.saturating_sub(1),
            (None, c) if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// Most existing values a reference error lists.
const TARGETS_SHOWN: usize = 10;

/// A leafref of `tree` at `data_path` whose target does not exist (RFC
/// 7950 instance-required), in the words of the value errors: "vrid must
/// be the vrid of an existing group (1, 2), not "9"". None when the node
/// is not a leafref.
pub fn reference_message(tree: &DataTree<'static>, data_path: &str) -> Option<String> {
    let node = tree.find_path(data_path).ok()?;
    let schema = node.schema();
    if schema.leaf_type()?.base_type() != DataValueType::LeafRef {
        return None;
    }
    let value = node.value_canonical()?;
    // SAFETY: a leafref's live schema node; libyang returns its target's
    // compiled node (of the same context) or null.
    let target = unsafe { ffi::lysc_node_lref_target(schema.as_raw()) };
    if target.is_null() {
        return None;
    }
    // SAFETY: a live schema node of the context.
    let target = unsafe { SchemaNode::from_raw(context(), target as *mut ffi::lysc_node) };
    let whose = match target.ancestors().next() {
        Some(list) => format!("the {} of an existing {}", target.name(), list.name()),
        None => format!("an existing {}", target.name()),
    };
    let path = target.path(SchemaPathFormat::DATA);
    let mut existing: Vec<std::string::String> = crate::yang::find_xpath(tree, &path)
        .map(|set| set.iter().filter_map(|n| n.value_canonical()).collect())
        .unwrap_or_default();
    let mut seen = std::collections::HashSet::new();
    existing.retain(|v| seen.insert(v.clone()));
    let known = match existing.len() {
        0 => "there is none".to_string(),
        n if n <= TARGETS_SHOWN => existing.join(", "),
        n => format!("{}, … ({n} in all)", existing[..TARGETS_SHOWN].join(", ")),
    };
    Some(format!(
        "{} must be {whose} ({known}), not \"{}\"",
        schema.name(),
        shown(&value)
    ))
}

/// Whether libyang refuses `value` for `schema` (a leaf or leaf-list) by
/// its type alone.
pub fn refuses(schema: &SchemaNode<'_>, value: &str) -> bool {
    // SAFETY: a live schema node and a value of `value.len()` bytes; a
    // null context makes libyang log nothing, a null data node leaves out
    // what needs data (leafref targets), and nothing is returned.
    let rc = unsafe {
        ffi::lyd_value_validate(
            std::ptr::null(),
            schema.as_raw(),
            value.as_ptr() as *const c_char,
            value.len(),
            std::ptr::null(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    !matches!(rc, ffi::LY_ERR::LY_SUCCESS | ffi::LY_ERR::LY_EINCOMPLETE)
}

/// `value`, cut to `VALUE_SHOWN` characters.
fn shown(value: &str) -> String {
    match value.char_indices().nth(VALUE_SHOWN) {
        None => value.to_string(),
        Some((i, _)) => format!("{}… ({} characters)", &value[..i], value.chars().count()),
    }
}

/// A NUL-terminated libyang string.
fn text(p: *const c_char) -> Option<String> {
    if p.is_null() {
        None
    } else {
        // SAFETY: libyang's compiled schema strings are NUL-terminated and
        // live as long as the context.
        Some(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    }
}

/// A libyang sized array (`LY_ARRAY`): its count sits just before its
/// first item.
///
/// # Safety
/// `p` must be null or the first item of a live libyang sized array.
unsafe fn items<'a, T>(p: *const T) -> &'a [T] {
    if p.is_null() {
        return &[];
    }
    // SAFETY: per the function contract (LY_ARRAY_COUNT_TYPE is a u64).
    unsafe {
        let n = *(p as *const u64).offset(-1) as usize;
        std::slice::from_raw_parts(p, n)
    }
}

fn base(t: *const ffi::lysc_type) -> DataValueType {
    // SAFETY: `t` is a compiled type of the context, which outlives the
    // borrowed view.
    unsafe { SchemaLeafType::from_raw(context(), t as *mut ffi::lysc_type) }.base_type()
}

fn is_number(t: *const ffi::lysc_type) -> bool {
    use DataValueType::*;
    matches!(
        base(t),
        Int8 | Int16 | Int32 | Int64 | Uint8 | Uint16 | Uint32 | Uint64 | Dec64
    )
}

/// The built-in type names: a compiled type reports one of them as its
/// "typedef" when it is not derived from a typedef.
const BUILTIN: &[&str] = &[
    "binary",
    "bits",
    "boolean",
    "decimal64",
    "empty",
    "enumeration",
    "identityref",
    "instance-identifier",
    "int8",
    "int16",
    "int32",
    "int64",
    "leafref",
    "string",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "union",
];

/// The typedef a type derives from (without its prefix), if any.
fn typedef(t: *const ffi::lysc_type) -> Option<String> {
    // SAFETY: `t` is a compiled type of the context.
    let name = text(unsafe { (*t).name })?;
    let name = name.rsplit(':').next().unwrap_or(&name).to_string();
    (!BUILTIN.contains(&name.as_str())).then_some(name)
}

fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

/// The `error-message`s of a type's restrictions (and of its union
/// members'): a libyang error carrying one of them is kept as is.
fn own_messages(t: *const ffi::lysc_type) -> Vec<String> {
    use DataValueType::*;
    let mut out = Vec::new();
    // SAFETY: `t` is a compiled type of the context whose base type says
    // which `lysc_type_*` structure it is.
    unsafe {
        let range = match base(t) {
            Int8 | Int16 | Int32 | Int64 | Uint8 | Uint16 | Uint32 | Uint64 => {
                (*(t as *const ffi::lysc_type_num)).range
            }
            Dec64 => (*(t as *const ffi::lysc_type_dec)).range,
            String => {
                let s = &*(t as *const ffi::lysc_type_str);
                for p in items(s.patterns) {
                    out.extend(text((**p).emsg));
                }
                s.length
            }
            Binary => (*(t as *const ffi::lysc_type_bin)).length,
            Union => {
                let u = &*(t as *const ffi::lysc_type_union);
                for m in items(u.types) {
                    out.extend(own_messages(*m));
                }
                std::ptr::null_mut()
            }
            LeafRef => {
                let r = (*(t as *const ffi::lysc_type_leafref)).realtype;
                out.extend(own_messages(r));
                std::ptr::null_mut()
            }
            _ => std::ptr::null_mut(),
        };
        if !range.is_null() {
            out.extend(text((*range).emsg));
        }
    }
    out
}

/// The bounds of an integer type without a range.
fn type_bounds(b: DataValueType) -> (i128, i128) {
    use DataValueType::*;
    match b {
        Int8 => (i8::MIN.into(), i8::MAX.into()),
        Int16 => (i16::MIN.into(), i16::MAX.into()),
        Int32 => (i32::MIN.into(), i32::MAX.into()),
        Int64 => (i64::MIN.into(), i64::MAX.into()),
        Uint8 => (0, u8::MAX.into()),
        Uint16 => (0, u16::MAX.into()),
        Uint32 => (0, u32::MAX.into()),
        _ => (0, u64::MAX.into()),
    }
}

/// "1..254", "1..10 or 20..30", "7": the parts of a range or length.
/// `signed` reads the parts as `i64`, else as `u64`; `scale` is the
/// fraction digits of a decimal64.
///
/// # Safety
/// `range` must be null or a live compiled range.
unsafe fn parts(range: *const ffi::lysc_range, signed: bool, scale: u8) -> Option<String> {
    if range.is_null() {
        return None;
    }
    let num = |min: bool, p: &ffi::lysc_range_lysc_range_part| -> String {
        // SAFETY: the union holds the kind the base type says.
        let v: i128 = unsafe {
            match (min, signed) {
                (true, true) => p.__bindgen_anon_1.min_64.into(),
                (true, false) => p.__bindgen_anon_1.min_u64.into(),
                (false, true) => p.__bindgen_anon_2.max_64.into(),
                (false, false) => p.__bindgen_anon_2.max_u64.into(),
            }
        };
        decimal(v, scale)
    };
    // SAFETY: per the function contract.
    let list = unsafe { items((*range).parts) };
    if list.is_empty() {
        return None;
    }
    let words: Vec<String> = list
        .iter()
        .map(|p| {
            let (lo, hi) = (num(true, p), num(false, p));
            if lo == hi {
                lo
            } else {
                format!("{lo}..{hi}")
            }
        })
        .collect();
    Some(words.join(" or "))
}

/// `v` with `scale` fraction digits ("2.50" for 250, 2).
fn decimal(v: i128, scale: u8) -> String {
    if scale == 0 {
        return v.to_string();
    }
    let d = 10i128.pow(u32::from(scale));
    let sign = if v < 0 { "-" } else { "" };
    let a = v.abs();
    format!("{sign}{}.{:0w$}", a / d, a % d, w = usize::from(scale))
}

/// What values a type allows, as the end of "<node> must be ...".
fn describe(t: *const ffi::lysc_type) -> String {
    use DataValueType::*;
    let b = base(t);
    // SAFETY: `t` is a compiled type of the context whose base type says
    // which `lysc_type_*` structure it is; every pointer read is part of
    // that compiled schema.
    unsafe {
        match b {
            Int8 | Int16 | Int32 | Int64 | Uint8 | Uint16 | Uint32 | Uint64 => {
                let range = (*(t as *const ffi::lysc_type_num)).range;
                let signed = matches!(b, Int8 | Int16 | Int32 | Int64);
                parts(range, signed, 0).unwrap_or_else(|| {
                    let (lo, hi) = type_bounds(b);
                    format!("{lo}..{hi}")
                })
            }
            Dec64 => {
                let d = &*(t as *const ffi::lysc_type_dec);
                let fd = d.fraction_digits;
                let range = parts(d.range, true, fd).unwrap_or_else(|| {
                    format!(
                        "{}..{}",
                        decimal(i64::MIN.into(), fd),
                        decimal(i64::MAX.into(), fd)
                    )
                });
                format!("{range} (at most {fd} fraction digits)")
            }
            String => {
                let s = &*(t as *const ffi::lysc_type_str);
                let mut out = match typedef(t) {
                    Some(name) => format!("{} {name}", article(&name)),
                    None => "a string".to_string(),
                };
                if let Some(len) = parts(s.length, false, 0) {
                    out.push_str(&format!(" of {len} characters"));
                }
                if typedef(t).is_none() {
                    // patterns with their own message explain themselves
                    for p in items(s.patterns) {
                        let p = &**p;
                        if p.emsg.is_null() {
                            let expr = text(p.expr).unwrap_or_default();
                            let not = if p.inverted() != 0 { "not " } else { "" };
                            out.push_str(&format!(" {not}matching '{expr}'"));
                        }
                    }
                }
                out
            }
            Binary => {
                let len = parts((*(t as *const ffi::lysc_type_bin)).length, false, 0);
                match len {
                    Some(len) => format!("base64-encoded binary of {len} bytes"),
                    None => "base64-encoded binary".to_string(),
                }
            }
            Bool => "true or false".to_string(),
            Empty => "empty".to_string(),
            Enum => {
                let e = &*(t as *const ffi::lysc_type_enum);
                let names: Vec<std::string::String> =
                    items(e.enums).iter().filter_map(|i| text(i.name)).collect();
                format!("one of {}", names.join(", "))
            }
            Bits => {
                let e = &*(t as *const ffi::lysc_type_bits);
                let names: Vec<std::string::String> =
                    items(e.bits).iter().filter_map(|i| text(i.name)).collect();
                format!("a space-separated set of {}", names.join(", "))
            }
            IdentityRef => {
                let r = &*(t as *const ffi::lysc_type_identityref);
                let mut names = Vec::new();
                for b in items(r.bases) {
                    derived(*b, &mut names);
                }
                format!("one of {}", names.join(", "))
            }
            InstanceId => "an instance-identifier".to_string(),
            LeafRef => describe((*(t as *const ffi::lysc_type_leafref)).realtype),
            Union => match typedef(t) {
                Some(name) => format!("{} {name}", article(&name)),
                None => {
                    let u = &*(t as *const ffi::lysc_type_union);
                    let members: Vec<std::string::String> =
                        items(u.types).iter().map(|m| describe(*m)).collect();
                    members.join(" or ")
                }
            },
            Unknown => "a valid value".to_string(),
        }
    }
}

/// The identities derived from `ident` (recursively), as "module:name".
///
/// # Safety
/// `ident` must be a live compiled identity.
unsafe fn derived(ident: *const ffi::lysc_ident, out: &mut Vec<String>) {
    // SAFETY: per the function contract; `derived` is a sized array of
    // live identities, and a module's name lives as long as the context.
    unsafe {
        for d in items((*ident).derived) {
            let d = *d;
            let module = text((*(*d).module).name).unwrap_or_default();
            if let Some(name) = text((*d).name) {
                let full = format!("{module}:{name}");
                if !out.contains(&full) {
                    out.push(full);
                }
            }
            derived(d, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(path: &str) -> SchemaNode<'static> {
        context().find_path(path).expect(path)
    }

    const GROUP: &str = "/hotlease-vrrp:vrrp/group";
    const POOL: &str = "/hotlease-dhcp-server:dhcp-server/ip-pool";

    #[test]
    fn a_range_names_the_node_its_bounds_and_the_value() {
        let m = value_message(
            &leaf(&format!("{GROUP}/priority")),
            "255",
            "Unsatisfied range - value \"255\" is out of the allowed range.",
        );
        assert_eq!(m, "priority must be 1..254, not \"255\"");
        let m = value_message(&leaf(&format!("{GROUP}/advertise-interval")), "5", "x");
        assert_eq!(
            m,
            "advertise-interval must be 10..40950 milliseconds, not \"5\""
        );
        // "60..max" reads as the type's maximum
        let m = value_message(&leaf(&format!("{POOL}/lease-time")), "10", "x");
        assert!(m.starts_with("lease-time must be 60..4294967295"), "{m}");
    }

    #[test]
    fn a_typedef_is_named_instead_of_its_pattern() {
        let m = value_message(&leaf(&format!("{GROUP}/virtual-ip")), "192.0.2.300", "x");
        assert_eq!(
            m,
            "virtual-ip must be an ipv4-address-no-zone, not \"192.0.2.300\""
        );
    }

    #[test]
    fn enums_booleans_and_lengths_say_what_is_allowed() {
        let m = value_message(&leaf(&format!("{GROUP}/version")), "v4", "x");
        assert_eq!(m, "version must be one of v2, v3, not \"v4\"");
        let m = value_message(&leaf(&format!("{GROUP}/preempt/enabled")), "maybe", "x");
        assert_eq!(m, "enabled must be true or false, not \"maybe\"");
        let long = "x".repeat(65);
        let m = value_message(&leaf(&format!("{POOL}/name")), &long, "x");
        assert_eq!(
            m,
            format!(
                "name must be a string of 1..64 characters, not \"{}… (65 characters)\"",
                "x".repeat(48)
            )
        );
    }

    #[test]
    fn parse_errors_are_phrased_like_edit_errors() {
        let errs = crate::yang::parse_config_xml(
            r#"<vrrp xmlns="urn:hotlease:yang:vrrp"><group><interface>e[']0</interface><vrid>1</vrid><priority>255</priority></group></vrrp>"#,
        )
        .unwrap_err();
        let e = &errs[0];
        let m = parse_error_message(e.path.as_deref().unwrap(), &e.message);
        assert_eq!(
            m.as_deref(),
            Some("priority must be 1..254, not \"255\""),
            "{e:?}"
        );
        // a message whose quoted text is not the refused value stays
        assert_eq!(
            parse_error_message("/hotlease-vrrp:vrrp/group/priority", "Invalid \"100\" here"),
            None
        );
        assert_eq!(
            without_predicates("/m:a/b[k='x/]y'][j=\"]\"]/c"),
            "/m:a/b/c"
        );
    }

    #[test]
    fn a_restriction_with_its_own_error_message_keeps_it() {
        let schema = leaf(&format!("{GROUP}/interface"));
        let own = own_messages(schema.leaf_type().unwrap().as_raw());
        assert!(!own.is_empty());
        assert_eq!(value_message(&schema, "eth/0", &own[0]), own[0]);
    }
}
