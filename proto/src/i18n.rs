//! The officer's language: which languages the forms and labels exist in, and the translation
//! catalogues behind them.
//!
//! Payloads are language-neutral structured data; only what a person reads is translated: form
//! titles, section titles, field labels, enumerated values (kinds, priorities, statuses, refusal
//! grounds, identifier kinds) and the help comments of the blank forms. The texts live in one
//! TOML file per language under `proto/i18n/` (a translator edits them without touching code),
//! embedded in the binary with `include_str!`. Keys are dotted paths (`field.offence`,
//! `status.refused`); a value may contain `{n}`, replaced by a number or a name where the
//! renderer says so.
//!
//! A key missing in a language falls back to English, and a key missing in English to the key
//! itself, so a gap shows as a readable English label rather than a crash; the tests make sure
//! there is no gap: every language has exactly the keys of English, and every key the renderer
//! and the templates ask for exists.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

/// A language the forms and labels are available in.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub enum Language {
    /// English, always accepted between points of contact.
    #[default]
    En,
    /// French.
    Fr,
    /// German.
    De,
    /// Spanish.
    Es,
    /// Portuguese.
    Pt,
}

impl Language {
    /// Every supported language, English first.
    pub const ALL: [Language; 5] = [
        Language::En,
        Language::Fr,
        Language::De,
        Language::Es,
        Language::Pt,
    ];

    /// The ISO 639-1 code: `en`, `fr`, `de`, `es`, `pt`.
    pub fn code(self) -> &'static str {
        match self {
            Language::En => "en",
            Language::Fr => "fr",
            Language::De => "de",
            Language::Es => "es",
            Language::Pt => "pt",
        }
    }

    /// The catalogue file as shipped (TOML).
    pub fn source(self) -> &'static str {
        match self {
            Language::En => include_str!("../i18n/en.toml"),
            Language::Fr => include_str!("../i18n/fr.toml"),
            Language::De => include_str!("../i18n/de.toml"),
            Language::Es => include_str!("../i18n/es.toml"),
            Language::Pt => include_str!("../i18n/pt.toml"),
        }
    }

    /// The text for `key` in this language, falling back to English, then to the key itself.
    pub fn text(self, key: &str) -> &str {
        lookup(self, key)
            .or_else(|| lookup(Language::En, key))
            .unwrap_or(key)
    }

    /// The text for `key` with `{n}` replaced by `value`.
    pub fn format(self, key: &str, value: &str) -> String {
        self.text(key).replace("{n}", value)
    }

    /// Every key this language's catalogue defines, sorted.
    pub fn keys(self) -> Vec<&'static str> {
        catalogue(self).keys().map(String::as_str).collect()
    }

    /// Whether this language's catalogue defines `key` (no fallback).
    pub fn has(self, key: &str) -> bool {
        lookup(self, key).is_some()
    }

    /// The list of supported codes for error messages: `en, fr, de, es, pt`.
    pub fn supported_codes() -> String {
        Language::ALL
            .iter()
            .map(|language| language.code())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for Language {
    type Err = String;

    /// Accepts a code in any case, also with a region (`pt-BR`, `fr_CA`), which selects the
    /// language.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let trimmed = text.trim();
        let primary = trimmed
            .split(['-', '_'])
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        Language::ALL
            .into_iter()
            .find(|language| language.code() == primary)
            .ok_or_else(|| {
                format!(
                    "`{trimmed}` is not a supported language; use one of: {}",
                    Language::supported_codes()
                )
            })
    }
}

impl TryFrom<String> for Language {
    type Error = String;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<Language> for String {
    fn from(language: Language) -> String {
        language.code().to_string()
    }
}

type Catalogue = BTreeMap<String, String>;

fn lookup(language: Language, key: &str) -> Option<&'static str> {
    catalogue(language).get(key).map(String::as_str)
}

fn catalogue(language: Language) -> &'static Catalogue {
    static CATALOGUES: OnceLock<Vec<Catalogue>> = OnceLock::new();
    let all = CATALOGUES.get_or_init(|| {
        Language::ALL
            .iter()
            .map(|language| parse_catalogue(language.source()).unwrap_or_default())
            .collect()
    });
    let index = Language::ALL
        .iter()
        .position(|candidate| *candidate == language)
        .unwrap_or(0);
    &all[index]
}

/// Reads a catalogue file into dotted keys; only strings and tables are allowed.
pub fn parse_catalogue(text: &str) -> Result<BTreeMap<String, String>, String> {
    let table: toml::Table = toml::from_str(text).map_err(|error| error.to_string())?;
    let mut out = BTreeMap::new();
    flatten("", &table, &mut out)?;
    Ok(out)
}

fn flatten(prefix: &str, table: &toml::Table, out: &mut Catalogue) -> Result<(), String> {
    for (key, value) in table {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            toml::Value::String(text) => {
                out.insert(path, text.clone());
            }
            toml::Value::Table(inner) => flatten(&path, inner, out)?,
            other => return Err(format!("{path}: expected text, found {}", other.type_str())),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_catalogue_parses_and_has_exactly_the_keys_of_english() {
        let english = parse_catalogue(Language::En.source()).expect("en.toml parses");
        assert!(english.len() > 100, "{} keys", english.len());
        for language in Language::ALL {
            let other = parse_catalogue(language.source())
                .unwrap_or_else(|error| panic!("{language}.toml: {error}"));
            let missing: Vec<_> = english.keys().filter(|k| !other.contains_key(*k)).collect();
            let extra: Vec<_> = other.keys().filter(|k| !english.contains_key(*k)).collect();
            assert!(missing.is_empty(), "{language}.toml lacks {missing:?}");
            assert!(
                extra.is_empty(),
                "{language}.toml has unknown keys {extra:?}"
            );
            for (key, value) in &other {
                assert!(!value.trim().is_empty(), "{language}.toml: {key} is empty");
                let english_value = &english[key];
                assert_eq!(
                    value.contains("{n}"),
                    english_value.contains("{n}"),
                    "{language}.toml: {key} must use {{n}} exactly where English does"
                );
            }
        }
    }

    #[test]
    fn translations_are_not_english_copies() {
        // A few labels that must differ from English in every other language: a file that is a
        // copy of en.toml would pass the key test but translate nothing.
        for language in &Language::ALL[1..] {
            for key in ["kind.preservation", "field.offence", "status.refused"] {
                assert_ne!(
                    language.text(key),
                    Language::En.text(key),
                    "{language} {key}"
                );
            }
        }
    }

    #[test]
    fn codes_parse_and_unknown_codes_list_the_supported_ones() {
        for language in Language::ALL {
            assert_eq!(language.code().parse::<Language>(), Ok(language));
            assert_eq!(
                language.to_string().to_uppercase().parse::<Language>(),
                Ok(language)
            );
        }
        assert_eq!("pt-BR".parse::<Language>(), Ok(Language::Pt));
        assert_eq!("fr_CA".parse::<Language>(), Ok(Language::Fr));
        let error = "xx".parse::<Language>().expect_err("unknown");
        assert!(error.contains("`xx`"), "{error}");
        assert!(error.contains("en, fr, de, es, pt"), "{error}");
        assert!("".parse::<Language>().is_err());
    }

    #[test]
    fn missing_keys_fall_back_to_english_then_to_the_key() {
        assert_eq!(Language::De.text("no.such.key"), "no.such.key");
        assert!(!Language::De.has("no.such.key"));
        assert!(Language::De.has("field.offence"));
        assert_eq!(
            Language::Fr.format("value.days", "90"),
            Language::Fr.text("value.days").replace("{n}", "90")
        );
        assert!(Language::Fr.format("value.days", "90").contains("90"));
    }

    #[test]
    fn serde_uses_the_code() {
        #[derive(Serialize, Deserialize)]
        struct Config {
            language: Language,
        }
        let config: Config = toml::from_str("language = \"de\"").expect("parses");
        assert_eq!(config.language, Language::De);
        assert_eq!(
            toml::to_string(&config).expect("writes").trim(),
            "language = \"de\""
        );
        let error = toml::from_str::<Config>("language = \"klingon\"")
            .err()
            .expect("refused")
            .to_string();
        assert!(error.contains("en, fr, de, es, pt"), "{error}");
    }
}
