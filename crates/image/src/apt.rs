//! `deb-src` entries derived from `deb` ones, in both of apt's source formats, so that source
//! packages come from the same places as binary ones and no registry host is named here.

/// Converts deb822 sources (the `*.sources` format) into `deb-src` stanzas:
/// each enabled stanza whose `Types` include `deb` is kept with
/// `Types: deb-src`; other stanzas and comments are dropped. Returns an
/// empty string when nothing qualifies.
///
/// ```
/// let system = "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\nComponents: main\n";
/// assert_eq!(
///     kiln_image::apt::deb_src_sources(system),
///     "Types: deb-src\nURIs: http://mirror.example/debian\nSuites: bookworm\nComponents: main\n",
/// );
/// ```
pub fn deb_src_sources(deb822: &str) -> String {
    // Stanzas are separated by blank lines; comment lines are not fields,
    // and a continuation line (leading space) belongs to the field before it.
    let mut grouped: Vec<Vec<&str>> = vec![Vec::new()];
    for line in deb822.lines() {
        if line.trim().is_empty() {
            grouped.push(Vec::new());
        } else if !line.trim_start().starts_with('#')
            && let Some(stanza) = grouped.last_mut()
        {
            stanza.push(line);
        }
    }
    let mut stanzas = Vec::new();
    for lines in grouped.into_iter().filter(|stanza| !stanza.is_empty()) {
        let field = |name: &str| {
            lines.iter().find_map(|line| {
                let (key, value) = line.split_once(':')?;
                key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
            })
        };
        let has_deb =
            field("Types").is_some_and(|types| types.split_whitespace().any(|t| t == "deb"));
        let enabled = field("Enabled").is_none_or(|value| !value.eq_ignore_ascii_case("no"));
        if !has_deb || !enabled {
            continue;
        }
        let mut out = String::new();
        for line in lines {
            let is_types = line
                .split_once(':')
                .is_some_and(|(key, _)| key.trim().eq_ignore_ascii_case("Types"));
            if is_types {
                out.push_str("Types: deb-src\n");
            } else {
                out.push_str(line);
                out.push('\n');
            }
        }
        stanzas.push(out);
    }
    stanzas.join("\n")
}

/// Converts one-line sources (the `sources.list` format): each `deb` line
/// becomes a `deb-src` line with the same options, URI, suite and
/// components; everything else is dropped.
///
/// ```
/// assert_eq!(
///     kiln_image::apt::deb_src_lines("deb [arch=amd64] http://mirror.example/debian bookworm main\n"),
///     "deb-src [arch=amd64] http://mirror.example/debian bookworm main\n",
/// );
/// ```
pub fn deb_src_lines(sources_list: &str) -> String {
    let mut out = String::new();
    for line in sources_list.lines() {
        if let Some(rest) = line.trim_start().strip_prefix("deb ") {
            out.push_str("deb-src ");
            out.push_str(rest.trim());
            out.push('\n');
        }
    }
    out
}
