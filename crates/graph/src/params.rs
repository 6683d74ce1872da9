//! [`Params`]: the one encoding of a builder's parameters.

use serde::Serialize;

/// A builder's parameters (see [`Builder::params`](crate::Builder::params)), in the one
/// encoding every builder uses: the compact JSON of a typed value, object keys sorted.
///
/// Sorting the keys makes the bytes depend on the value alone, not on the order its type
/// declares its fields: reordering a struct's fields keeps every digest; renaming, adding or
/// removing one changes them. Keep maps in `BTreeMap`s and sets in sorted `Vec`s, so the order
/// of their entries is the value's too.
///
/// ```
/// use kiln_graph::Params;
///
/// #[derive(serde::Serialize)]
/// struct Download<'a> {
///     version: &'a str,
///     sha256: &'a str,
/// }
///
/// let params = Params::of(&Download { version: "1.0", sha256: "ab12" });
/// assert_eq!(params.as_bytes(), br#"{"sha256":"ab12","version":"1.0"}"#);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Params(Vec<u8>);

impl Params {
    /// Encodes `value`.
    ///
    /// # Panics
    ///
    /// If `value` cannot be JSON: a map whose keys are not strings, or a `Serialize`
    /// implementation that fails. Both are bugs in the builder, found by the first test that
    /// adds it to a graph, and never depend on the spec.
    pub fn of<T: Serialize + ?Sized>(value: &T) -> Params {
        match crate::canonical::to_vec(value) {
            Ok(bytes) => Params(bytes),
            Err(error) => panic!(
                "builder parameters of type {} are not JSON: {error}",
                std::any::type_name::<T>()
            ),
        }
    }

    /// The parameters of a builder that has none (`null`): everything it does is its kind,
    /// version and inputs.
    pub fn none() -> Params {
        Params::of(&())
    }

    /// The encoded bytes, as they enter the derivation's digest.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The value back, for a builder that carries its parameters as [`Params`] and reads them
    /// when it runs.
    ///
    /// # Errors
    ///
    /// If the bytes are not a `T`.
    pub fn decode<'a, T: serde::Deserialize<'a>>(&'a self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::Params;

    #[derive(serde::Serialize)]
    struct Declared {
        zebra: u32,
        apple: Vec<&'static str>,
        #[serde(rename = "middle-name")]
        middle: Option<String>,
        nested: BTreeMap<&'static str, Declared2>,
    }

    #[derive(serde::Serialize)]
    struct Declared2 {
        y: bool,
        x: i64,
    }

    #[test]
    fn keys_are_sorted_at_every_depth_whatever_the_declared_order() {
        let value = Declared {
            zebra: 1,
            apple: vec!["b", "a"],
            middle: None,
            nested: BTreeMap::from([("k", Declared2 { y: true, x: -2 })]),
        };
        // Also fails if some crate turns on serde_json's `preserve_order`, which would make the
        // bytes follow the declared order and move every digest.
        assert_eq!(
            std::str::from_utf8(Params::of(&value).as_bytes()).expect("JSON is UTF-8"),
            r#"{"apple":["b","a"],"middle-name":null,"nested":{"k":{"x":-2,"y":true}},"zebra":1}"#
        );
    }

    #[test]
    fn none_is_null() {
        assert_eq!(Params::none().as_bytes(), b"null");
    }

    #[test]
    #[should_panic(expected = "are not JSON")]
    fn a_map_with_non_string_keys_is_a_bug() {
        let _ = Params::of(&BTreeMap::from([((1, 2), "pair key")]));
    }

    #[test]
    fn decode_reads_back_what_of_wrote() {
        let params = Params::of(&BTreeMap::from([("a", 1u8), ("b", 2)]));
        let back: BTreeMap<String, u8> = params.decode().expect("what Params::of wrote");
        assert_eq!(
            back,
            BTreeMap::from([("a".to_owned(), 1), ("b".to_owned(), 2)])
        );
    }
}
