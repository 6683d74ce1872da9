//! The canonical JSON behind [`Params`](crate::Params), written in one pass.
//!
//! The bytes are those of `serde_json::to_vec(&serde_json::to_value(value)?)`: compact JSON
//! with every object's keys sorted (a `serde_json::Map` is a `BTreeMap` without the
//! `preserve_order` feature). Building that `Value` tree first cost an allocation per field
//! and per string, and freeing it again: most of a big cluster's graph construction. This
//! serializer writes each object's entries into the output as they come, remembers where each
//! one lies, and puts them in key order when the object ends if they did not come in it (one
//! copy of the object's bytes; a `BTreeMap`'s entries come in order and are not copied). Numbers that are not integers of at most 64 bits, and map keys that are not
//! strings, go through `serde_json::Value` as before, so every value keeps its bytes.

use std::borrow::Cow;
use std::ops::Range;

use serde::ser::{self, Serialize};
use serde_json::Error;

/// `value` as canonical JSON (see the module documentation).
pub(crate) fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(128);
    value.serialize(Canonical { out: &mut out })?;
    Ok(out)
}

/// Writes one value to `out`.
struct Canonical<'a> {
    out: &'a mut Vec<u8>,
}

impl Canonical<'_> {
    /// Writes `value` through serde_json's own writer (strings, integers, `Value`s).
    fn plain<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Error> {
        serde_json::to_writer(&mut *self.out, value)
    }

    /// Writes `value` as its `serde_json::Value` would be written: for the scalars whose
    /// conversion is not the identity (floats, 128-bit integers).
    fn via_value<T: Serialize>(self, value: T) -> Result<(), Error> {
        let value = serde_json::to_value(value)?;
        self.plain(&value)
    }

    /// Starts `{"variant":` for the variants that serialize as a one-entry object.
    fn open_variant(&mut self, variant: &str) -> Result<(), Error> {
        self.out.push(b'{');
        serde_json::to_writer(&mut *self.out, variant)?;
        self.out.push(b':');
        Ok(())
    }
}

/// An array being written.
struct Seq<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
    /// Whether a `}` closes a variant's object after the array.
    variant: bool,
}

impl Seq<'_> {
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        value.serialize(Canonical { out: self.out })
    }

    fn finish(self) -> Result<(), Error> {
        self.out.push(b']');
        if self.variant {
            self.out.push(b'}');
        }
        Ok(())
    }
}

/// An object being written: `{` and its entries (`"key":value`, separated by commas) are in
/// `out` as they came; `entries` says where each entry lies, counted from `start` (just
/// after the `{`). Entries that came in key order (every `BTreeMap`) are left where they
/// are; otherwise [`Object::finish`] rewrites them in key order.
struct Object<'a> {
    out: &'a mut Vec<u8>,
    start: usize,
    entries: Vec<(Cow<'static, str>, Range<usize>)>,
    /// The key of `serialize_key`, waiting for its value.
    key: Option<String>,
    /// Whether a `}` closes a variant's object after this one.
    variant: bool,
}

impl<'a> Object<'a> {
    fn new(out: &'a mut Vec<u8>, len: Option<usize>, variant: bool) -> Object<'a> {
        out.push(b'{');
        let start = out.len();
        Object {
            out,
            start,
            entries: Vec::with_capacity(len.unwrap_or(0)),
            key: None,
            variant,
        }
    }

    fn entry<T: Serialize + ?Sized>(
        &mut self,
        key: Cow<'static, str>,
        value: &T,
    ) -> Result<(), Error> {
        if !self.entries.is_empty() {
            self.out.push(b',');
        }
        let begin = self.out.len() - self.start;
        serde_json::to_writer(&mut *self.out, key.as_ref())?;
        self.out.push(b':');
        value.serialize(Canonical { out: self.out })?;
        self.entries.push((key, begin..self.out.len() - self.start));
        Ok(())
    }

    /// Closes the object, its entries in key order; of two entries with one key, the later
    /// one stays, as inserting both into a map would leave it.
    fn finish(mut self) -> Result<(), Error> {
        let in_order = self.entries.windows(2).all(|pair| pair[0].0 < pair[1].0);
        if !in_order {
            let body = self.out.split_off(self.start);
            // Stable: equal keys keep their order, so the last of a run is the latest.
            self.entries.sort_by(|a, b| a.0.cmp(&b.0));
            let mut first = true;
            for (index, (key, range)) in self.entries.iter().enumerate() {
                if self
                    .entries
                    .get(index + 1)
                    .is_some_and(|(next, _)| next == key)
                {
                    continue;
                }
                if !first {
                    self.out.push(b',');
                }
                first = false;
                self.out.extend_from_slice(&body[range.clone()]);
            }
        }
        self.out.push(b'}');
        if self.variant {
            self.out.push(b'}');
        }
        Ok(())
    }
}

impl<'a> ser::Serializer for Canonical<'a> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Seq<'a>;
    type SerializeTuple = Seq<'a>;
    type SerializeTupleStruct = Seq<'a>;
    type SerializeTupleVariant = Seq<'a>;
    type SerializeMap = Object<'a>;
    type SerializeStruct = Object<'a>;
    type SerializeStructVariant = Object<'a>;

    fn serialize_bool(self, value: bool) -> Result<(), Error> {
        self.out
            .extend_from_slice(if value { b"true" } else { b"false" });
        Ok(())
    }

    fn serialize_i8(self, value: i8) -> Result<(), Error> {
        self.plain(&value)
    }

    fn serialize_i16(self, value: i16) -> Result<(), Error> {
        self.plain(&value)
    }

    fn serialize_i32(self, value: i32) -> Result<(), Error> {
        self.plain(&value)
    }

    fn serialize_i64(self, value: i64) -> Result<(), Error> {
        self.plain(&value)
    }

    fn serialize_i128(self, value: i128) -> Result<(), Error> {
        self.via_value(value)
    }

    fn serialize_u8(self, value: u8) -> Result<(), Error> {
        self.plain(&value)
    }

    fn serialize_u16(self, value: u16) -> Result<(), Error> {
        self.plain(&value)
    }

    fn serialize_u32(self, value: u32) -> Result<(), Error> {
        self.plain(&value)
    }

    fn serialize_u64(self, value: u64) -> Result<(), Error> {
        self.plain(&value)
    }

    fn serialize_u128(self, value: u128) -> Result<(), Error> {
        self.via_value(value)
    }

    fn serialize_f32(self, value: f32) -> Result<(), Error> {
        self.via_value(value)
    }

    fn serialize_f64(self, value: f64) -> Result<(), Error> {
        self.via_value(value)
    }

    fn serialize_char(self, value: char) -> Result<(), Error> {
        self.plain(&value)
    }

    fn serialize_str(self, value: &str) -> Result<(), Error> {
        self.plain(value)
    }

    fn serialize_bytes(self, value: &[u8]) -> Result<(), Error> {
        // A `Value` holds bytes as an array of numbers.
        let mut seq = ser::Serializer::serialize_seq(self, Some(value.len()))?;
        for byte in value {
            ser::SerializeSeq::serialize_element(&mut seq, byte)?;
        }
        ser::SerializeSeq::end(seq)
    }

    fn serialize_none(self) -> Result<(), Error> {
        self.serialize_unit()
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Error> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), Error> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), Error> {
        self.serialize_unit()
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), Error> {
        self.plain(variant)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        mut self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.open_variant(variant)?;
        value.serialize(Canonical { out: self.out })?;
        self.out.push(b'}');
        Ok(())
    }

    fn serialize_seq(self, _len: Option<usize>) -> Result<Seq<'a>, Error> {
        self.out.push(b'[');
        Ok(Seq {
            out: self.out,
            first: true,
            variant: false,
        })
    }

    fn serialize_tuple(self, len: usize) -> Result<Seq<'a>, Error> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_struct(self, _name: &'static str, len: usize) -> Result<Seq<'a>, Error> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_variant(
        mut self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Seq<'a>, Error> {
        self.open_variant(variant)?;
        self.out.push(b'[');
        Ok(Seq {
            out: self.out,
            first: true,
            variant: true,
        })
    }

    fn serialize_map(self, len: Option<usize>) -> Result<Object<'a>, Error> {
        Ok(Object::new(self.out, len, false))
    }

    fn serialize_struct(self, _name: &'static str, len: usize) -> Result<Object<'a>, Error> {
        Ok(Object::new(self.out, Some(len), false))
    }

    fn serialize_struct_variant(
        mut self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Object<'a>, Error> {
        self.open_variant(variant)?;
        Ok(Object::new(self.out, Some(len), true))
    }
}

/// The serializer traits of arrays (sequences, tuples, tuple structs and tuple variants): each
/// element in order, through [`Seq::element`].
macro_rules! array_like {
    ($($trait:ident :: $method:ident),+) => {$(
        impl ser::$trait for Seq<'_> {
            type Ok = ();
            type Error = Error;

            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
                self.element(value)
            }

            fn end(self) -> Result<(), Error> {
                self.finish()
            }
        }
    )+};
}

array_like!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

/// The serializer traits of structs and struct variants: each field an entry, through
/// [`Object::entry`].
macro_rules! struct_like {
    ($($trait:ident),+) => {$(
        impl ser::$trait for Object<'_> {
            type Ok = ();
            type Error = Error;

            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                value: &T,
            ) -> Result<(), Error> {
                self.entry(Cow::Borrowed(key), value)
            }

            fn end(self) -> Result<(), Error> {
                self.finish()
            }
        }
    )+};
}

struct_like!(SerializeStruct, SerializeStructVariant);

impl ser::SerializeMap for Object<'_> {
    type Ok = ();
    type Error = Error;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        self.key = Some(map_key(key)?);
        Ok(())
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        let key = self
            .key
            .take()
            .ok_or_else(|| <Error as ser::Error>::custom("a map value without its key"))?;
        self.entry(Cow::Owned(key), value)
    }

    fn end(self) -> Result<(), Error> {
        self.finish()
    }
}

/// A map key as a `serde_json::Map` would hold it: a string as it is; anything else (numbers,
/// booleans, unit variants, or an error for keys JSON cannot have) through serde_json's own
/// map-key rules, by building a one-entry `Value` object.
fn map_key<T: Serialize + ?Sized>(key: &T) -> Result<String, Error> {
    /// A map of one entry, `key: null`.
    struct OneKey<'k, T: ?Sized>(&'k T);

    impl<T: Serialize + ?Sized> Serialize for OneKey<'_, T> {
        fn serialize<S: ser::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            use ser::SerializeMap as _;
            let mut map = serializer.serialize_map(Some(1))?;
            map.serialize_entry(self.0, &())?;
            map.end()
        }
    }

    if let Ok(text) = key.serialize(StrKey) {
        return Ok(text);
    }
    match serde_json::to_value(OneKey(key))? {
        serde_json::Value::Object(map) => map
            .into_iter()
            .next()
            .map(|(text, _)| text)
            .ok_or_else(|| <Error as ser::Error>::custom("a map key vanished")),
        _ => Err(<Error as ser::Error>::custom(
            "a map key is not an object's",
        )),
    }
}

/// The fast path of [`map_key`]: keys that are strings (also through newtypes); anything else
/// is refused, and [`map_key`] asks serde_json.
struct StrKey;

/// Why [`StrKey`] refused a key (never shown: [`map_key`] asks serde_json instead).
#[derive(Debug)]
struct NotAStr;

impl std::fmt::Display for NotAStr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not a string key")
    }
}

impl std::error::Error for NotAStr {}

impl ser::Error for NotAStr {
    fn custom<T: std::fmt::Display>(_message: T) -> NotAStr {
        NotAStr
    }
}

impl ser::Serializer for StrKey {
    type Ok = String;
    type Error = NotAStr;
    type SerializeSeq = ser::Impossible<String, NotAStr>;
    type SerializeTuple = ser::Impossible<String, NotAStr>;
    type SerializeTupleStruct = ser::Impossible<String, NotAStr>;
    type SerializeTupleVariant = ser::Impossible<String, NotAStr>;
    type SerializeMap = ser::Impossible<String, NotAStr>;
    type SerializeStruct = ser::Impossible<String, NotAStr>;
    type SerializeStructVariant = ser::Impossible<String, NotAStr>;

    fn serialize_str(self, value: &str) -> Result<String, NotAStr> {
        Ok(value.to_owned())
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<String, NotAStr> {
        value.serialize(self)
    }

    fn serialize_bool(self, _value: bool) -> Result<String, NotAStr> {
        Err(NotAStr)
    }

    fn serialize_i8(self, _value: i8) -> Result<String, NotAStr> {
        Err(NotAStr)
    }

    fn serialize_i16(self, _value: i16) -> Result<String, NotAStr> {
        Err(NotAStr)
    }

    fn serialize_i32(self, _value: i32) -> Result<String, NotAStr> {
        Err(NotAStr)
    }

    fn serialize_i64(self, _value: i64) -> Result<String, NotAStr> {
        Err(NotAStr)
    }

    fn serialize_u8(self, _value: u8) -> Result<String, NotAStr> {
        Err(NotAStr)
    }

    fn serialize_u16(self, _value: u16) -> Result<String, NotAStr> {
        Err(NotAStr)
    }

    fn serialize_u32(self, _value: u32) -> Result<String, NotAStr> {
        Err(NotAStr)
    }

    fn serialize_u64(self, _value: u64) -> Result<String, NotAStr> {
        Err(NotAStr)
    }

    fn serialize_f32(self, _value: f32) -> Result<String, NotAStr> {
        Err(NotAStr)
    }

    fn serialize_f64(self, _value: f64) -> Result<String, NotAStr> {
        Err(NotAStr)
    }

    fn serialize_char(self, _value: char) -> Result<String, NotAStr> {
        Err(NotAStr)
    }

    fn serialize_bytes(self, _value: &[u8]) -> Result<String, NotAStr> {
        Err(NotAStr)
    }

    fn serialize_none(self) -> Result<String, NotAStr> {
        Err(NotAStr)
    }

    fn serialize_some<T: Serialize + ?Sized>(self, _value: &T) -> Result<String, NotAStr> {
        Err(NotAStr)
    }

    fn serialize_unit(self) -> Result<String, NotAStr> {
        Err(NotAStr)
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<String, NotAStr> {
        Err(NotAStr)
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
    ) -> Result<String, NotAStr> {
        Err(NotAStr)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result<String, NotAStr> {
        Err(NotAStr)
    }

    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq, NotAStr> {
        Err(NotAStr)
    }

    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple, NotAStr> {
        Err(NotAStr)
    }

    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleStruct, NotAStr> {
        Err(NotAStr)
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant, NotAStr> {
        Err(NotAStr)
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap, NotAStr> {
        Err(NotAStr)
    }

    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStruct, NotAStr> {
        Err(NotAStr)
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant, NotAStr> {
        Err(NotAStr)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use serde::Serialize;

    /// The encoding this module replaces.
    fn through_value<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(&serde_json::to_value(value)?)
    }

    fn same<T: Serialize + ?Sized>(value: &T) {
        let expected = through_value(value).map_err(|error| error.to_string());
        let actual = super::to_vec(value).map_err(|error| error.to_string());
        assert_eq!(
            actual.as_ref().map(|bytes| String::from_utf8_lossy(bytes)),
            expected
                .as_ref()
                .map(|bytes| String::from_utf8_lossy(bytes)),
        );
    }

    #[derive(Serialize)]
    enum Shape {
        Unit,
        Newtype(Vec<u8>),
        Tuple(i8, Option<char>),
        Struct {
            zeta: f32,
            alpha: (),
            beta: Box<Shape>,
        },
    }

    #[derive(Serialize)]
    struct Unit;

    #[derive(Serialize)]
    struct Wrapper(String);

    #[derive(Serialize)]
    struct Pair(u128, i128);

    #[derive(Serialize, PartialEq, Eq, PartialOrd, Ord)]
    enum Key {
        Second,
        First,
    }

    #[derive(Serialize)]
    struct Everything {
        z: Shape,
        y: Vec<Shape>,
        x: Unit,
        w: Wrapper,
        v: Pair,
        #[serde(skip_serializing_if = "Option::is_none")]
        u: Option<u64>,
        t: BTreeMap<i32, bool>,
        s: BTreeMap<Key, &'static str>,
        #[serde(with = "serde_bytes_like")]
        r: Vec<u8>,
        #[serde(flatten)]
        q: BTreeMap<String, f64>,
        p: (f32, f64, f64),
        o: &'static str,
        n: BTreeMap<bool, char>,
    }

    /// Serializes as `serialize_bytes`, which serde's own `Vec<u8>` does not.
    mod serde_bytes_like {
        pub fn serialize<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(bytes)
        }
    }

    #[test]
    fn the_bytes_of_the_value_tree_for_every_kind_of_value() {
        let everything = Everything {
            z: Shape::Struct {
                zeta: 0.1,
                alpha: (),
                beta: Box::new(Shape::Tuple(-3, Some('\u{e9}'))),
            },
            y: vec![
                Shape::Unit,
                Shape::Newtype(vec![0, 255]),
                Shape::Tuple(1, None),
            ],
            x: Unit,
            w: Wrapper("quote \" backslash \\ newline \n control \u{1} é".to_owned()),
            v: Pair(u128::from(u64::MAX), -1),
            u: None,
            t: BTreeMap::from([(-5, true), (10, false), (2, true)]),
            s: BTreeMap::from([(Key::Second, "b"), (Key::First, "a")]),
            r: vec![1, 2, 3],
            q: BTreeMap::from([("flat".to_owned(), 1.5), ("aa".to_owned(), -0.0)]),
            p: (f32::MAX, f64::NAN, 1e300),
            o: "",
            n: BTreeMap::from([(true, 'x'), (false, 'y')]),
        };
        same(&everything);
        same(&());
        same(&Unit);
        same(&Some(Some(3u8)));
        same(&Vec::<u8>::new());
        same(&BTreeMap::<String, u8>::new());
        // Too big for JSON's numbers in a `Value`: the same error.
        same(&Pair(u128::MAX, 0));
        // Keys JSON cannot have: an error either way.
        same(&BTreeMap::from([((1, 2), "pair key")]));
        same(&BTreeMap::from([(vec![1u8], "array key")]));
    }

    #[test]
    fn duplicate_keys_keep_the_last_value_as_a_map_does() {
        /// A map that names one key twice.
        struct Twice;
        impl Serialize for Twice {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeMap;
                let mut map = s.serialize_map(None)?;
                map.serialize_entry("b", &1)?;
                map.serialize_entry("a", &2)?;
                map.serialize_entry("b", &3)?;
                map.end()
            }
        }
        same(&Twice);
        assert_eq!(super::to_vec(&Twice).expect("JSON"), br#"{"a":2,"b":3}"#);
    }

    /// Any JSON value: objects with arbitrary keys (escapes, unicode, prefixes of each other),
    /// nested to a few levels.
    fn json() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::Value;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            ".*".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                prop::collection::vec(("[a-c\"\\\\é\u{1}]{0,3}", inner), 0..8)
                    .prop_map(|entries| Value::Object(entries.into_iter().collect())),
            ]
        })
    }

    /// A struct whose fields are declared out of order, holding arbitrary values.
    #[derive(Serialize, Debug)]
    struct Declared {
        zebra: serde_json::Value,
        apple: Vec<serde_json::Value>,
        mango: BTreeMap<String, serde_json::Value>,
    }

    proptest! {
        #[test]
        fn the_bytes_of_the_value_tree_for_any_json(
            value in json(),
            more in prop::collection::vec(json(), 0..3),
            keyed in prop::collection::btree_map(".{0,4}", json(), 0..4),
        ) {
            same(&value);
            same(&Declared { zebra: value.clone(), apple: more, mango: keyed });
        }
    }
}
