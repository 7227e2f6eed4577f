//! Handling codes: the sender's conditions on the use of a request, carried inside the signed
//! payload of every request, and their English wording for the recipient's screens.
//!
//! Modelled on the handling codes Europol's SIENA puts on every message (H0: may be used for law
//! enforcement purposes; H1: not in judicial proceedings without the provider's permission; H2: not
//! to be disseminated without permission; H3: other restrictions) and on the conditions a
//! requesting Party may set under the Budapest Convention (use limited to the investigation,
//! confidentiality, Art. 28). The structure is language-neutral: each value has a stable label
//! key (see [`Handling::labelled`]) so any language can render it; only
//! [`Handling::free_text`] is written by the sender in their own words.

use serde::{Deserialize, Serialize};

use super::text::optional_text;

/// Whether the recipient may pass the information on to other authorities or states.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnwardTransmission {
    /// Never, not even with consent asked later.
    Forbidden,
    /// Only with the sender's prior consent (SIENA H2).
    WithConsent,
    /// Allowed to other competent authorities for the same purpose.
    Permitted,
}

/// Whether the information may be used as evidence in judicial proceedings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EvidentialUse {
    /// Intelligence only: never as evidence; evidence comes through mutual legal assistance.
    IntelligenceOnly,
    /// Not as evidence without the sender's prior consent (SIENA H1).
    WithConsent,
    /// May be used as evidence (SIENA H0).
    MayBeUsedAsEvidence,
}

/// The sender's conditions on use of one request (signed inside the payload).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Handling {
    /// Use the information only for the case and purpose stated in the request.
    pub use_limited_to_case: bool,
    /// Whether it may be passed on.
    pub onward_transmission: OnwardTransmission,
    /// Whether it may be used as evidence.
    pub evidential_use: EvidentialUse,
    /// Answer and discuss the request only through this network, not by other channels.
    pub reply_channel_only: bool,
    /// Any other condition, in the sender's words, at most
    /// [`MAX_HANDLING_TEXT_BYTES`](super::MAX_HANDLING_TEXT_BYTES); blank in a form means none.
    #[serde(default, with = "optional_text")]
    pub free_text: Option<String>,
}

impl Default for Handling {
    /// The conditions the templates propose and the sender confirms: use for the stated case only,
    /// no onward transmission and no use as evidence without consent, answers through this channel.
    fn default() -> Self {
        Handling {
            use_limited_to_case: true,
            onward_transmission: OnwardTransmission::WithConsent,
            evidential_use: EvidentialUse::WithConsent,
            reply_channel_only: true,
            free_text: None,
        }
    }
}

impl OnwardTransmission {
    /// The form and command-line word: `forbidden`, `with-consent`, `permitted`.
    pub fn as_str(self) -> &'static str {
        match self {
            OnwardTransmission::Forbidden => "forbidden",
            OnwardTransmission::WithConsent => "with-consent",
            OnwardTransmission::Permitted => "permitted",
        }
    }

    /// Parses [`OnwardTransmission::as_str`]'s words.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.trim() {
            "forbidden" => Ok(OnwardTransmission::Forbidden),
            "with-consent" => Ok(OnwardTransmission::WithConsent),
            "permitted" => Ok(OnwardTransmission::Permitted),
            other => Err(format!(
                "`{other}` is not an onward-transmission condition; use forbidden, with-consent or permitted"
            )),
        }
    }
}

impl EvidentialUse {
    /// The form and command-line word: `intelligence-only`, `with-consent`,
    /// `may-be-used-as-evidence`.
    pub fn as_str(self) -> &'static str {
        match self {
            EvidentialUse::IntelligenceOnly => "intelligence-only",
            EvidentialUse::WithConsent => "with-consent",
            EvidentialUse::MayBeUsedAsEvidence => "may-be-used-as-evidence",
        }
    }

    /// Parses [`EvidentialUse::as_str`]'s words.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.trim() {
            "intelligence-only" => Ok(EvidentialUse::IntelligenceOnly),
            "with-consent" => Ok(EvidentialUse::WithConsent),
            "may-be-used-as-evidence" => Ok(EvidentialUse::MayBeUsedAsEvidence),
            other => Err(format!(
                "`{other}` is not an evidential-use condition; use intelligence-only, with-consent or may-be-used-as-evidence"
            )),
        }
    }
}

/// One rendered condition: a stable key for translations, its English label and English value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandlingLine {
    /// Translation key of the label, e.g. `handling.onward_transmission`.
    pub label_key: &'static str,
    /// Translation key of the value, e.g. `handling.onward.with-consent`; `None` for free text,
    /// which is shown as written.
    pub value_key: Option<&'static str>,
    /// The label in English.
    pub label: &'static str,
    /// The value in English (or the sender's free text).
    pub value: String,
}

/// Translation key and English text of the box title.
pub const HANDLING_TITLE: (&str, &str) = ("handling.title", "CONDITIONS ON USE");

impl Handling {
    /// Every condition as a labelled line, in a fixed order, in English with translation keys.
    pub fn labelled(&self) -> Vec<HandlingLine> {
        let yes_no = |flag: bool, yes: &'static str, no: &'static str| if flag { yes } else { no };
        let case = yes_no(
            self.use_limited_to_case,
            "handling.case.limited",
            "handling.case.not-limited",
        );
        let channel = yes_no(
            self.reply_channel_only,
            "handling.channel.only-this",
            "handling.channel.any",
        );
        let onward = match self.onward_transmission {
            OnwardTransmission::Forbidden => "handling.onward.forbidden",
            OnwardTransmission::WithConsent => "handling.onward.with-consent",
            OnwardTransmission::Permitted => "handling.onward.permitted",
        };
        let evidence = match self.evidential_use {
            EvidentialUse::IntelligenceOnly => "handling.evidence.intelligence-only",
            EvidentialUse::WithConsent => "handling.evidence.with-consent",
            EvidentialUse::MayBeUsedAsEvidence => "handling.evidence.may-be-used",
        };
        let mut lines = vec![
            HandlingLine {
                label_key: "handling.use_limited_to_case",
                value_key: Some(case),
                label: "Use",
                value: english(case).into(),
            },
            HandlingLine {
                label_key: "handling.onward_transmission",
                value_key: Some(onward),
                label: "Onward transmission",
                value: english(onward).into(),
            },
            HandlingLine {
                label_key: "handling.evidential_use",
                value_key: Some(evidence),
                label: "As evidence",
                value: english(evidence).into(),
            },
            HandlingLine {
                label_key: "handling.reply_channel_only",
                value_key: Some(channel),
                label: "Answers",
                value: english(channel).into(),
            },
        ];
        if let Some(text) = self.free_text.as_deref().filter(|t| !t.trim().is_empty()) {
            lines.push(HandlingLine {
                label_key: "handling.free_text",
                value_key: None,
                label: "Other conditions",
                value: text.to_string(),
            });
        }
        lines
    }

    /// A compact marker for one table row, e.g. `[case-only,onward:consent,evidence:consent,channel]`.
    pub fn marker(&self) -> String {
        let mut parts: Vec<&str> = Vec::new();
        if self.use_limited_to_case {
            parts.push("case-only");
        }
        parts.push(match self.onward_transmission {
            OnwardTransmission::Forbidden => "no-onward",
            OnwardTransmission::WithConsent => "onward:consent",
            OnwardTransmission::Permitted => "onward:ok",
        });
        parts.push(match self.evidential_use {
            EvidentialUse::IntelligenceOnly => "intel-only",
            EvidentialUse::WithConsent => "evidence:consent",
            EvidentialUse::MayBeUsedAsEvidence => "evidence:ok",
        });
        if self.reply_channel_only {
            parts.push("channel");
        }
        if self
            .free_text
            .as_deref()
            .is_some_and(|t| !t.trim().is_empty())
        {
            parts.push("+note");
        }
        format!("[{}]", parts.join(","))
    }

    /// One line for logs and audit records: every condition in words, `; `-separated, with the
    /// free text flattened to one line.
    pub fn one_line(&self) -> String {
        self.labelled()
            .iter()
            .map(|line| {
                let value: String = line
                    .value
                    .split(|c: char| c.is_whitespace() || c.is_control())
                    .filter(|word| !word.is_empty())
                    .collect::<Vec<_>>()
                    .join(" ");
                format!("{}: {value}", line.label.to_lowercase())
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The boxed "CONDITIONS ON USE" block shown at the top of a message, `width` characters wide
    /// (at least 40). Long values wrap; control characters in the free text are shown as spaces.
    pub fn render_box(&self, width: usize) -> Vec<String> {
        let width = width.max(40);
        let inner = width - 4;
        let mut out = vec![format!("+{}+", "=".repeat(width - 2))];
        let title = HANDLING_TITLE.1;
        out.push(format!("| {title:<inner$} |"));
        out.push(format!("+{}+", "-".repeat(width - 2)));
        for line in self.labelled() {
            let label = format!("{}: ", line.label);
            let indent = label.chars().count();
            let wrapped = wrap(&line.value, inner.saturating_sub(indent).max(10));
            for (index, piece) in wrapped.iter().enumerate() {
                let head = if index == 0 {
                    label.clone()
                } else {
                    " ".repeat(indent)
                };
                let text = format!("{head}{piece}");
                let pad = inner.saturating_sub(text.chars().count());
                out.push(format!("| {text}{} |", " ".repeat(pad)));
            }
        }
        out.push(format!("+{}+", "=".repeat(width - 2)));
        out
    }
}

/// The English text of each value key.
pub fn english(key: &str) -> &'static str {
    match key {
        "handling.case.limited" => "only for the case and purpose stated in this request",
        "handling.case.not-limited" => "not limited to this case",
        "handling.onward.forbidden" => "FORBIDDEN",
        "handling.onward.with-consent" => "only with the sender's prior consent",
        "handling.onward.permitted" => "permitted to competent authorities for the same purpose",
        "handling.evidence.intelligence-only" => {
            "INTELLIGENCE ONLY, never as evidence (use mutual legal assistance)"
        }
        "handling.evidence.with-consent" => "not as evidence without the sender's prior consent",
        "handling.evidence.may-be-used" => "may be used as evidence",
        "handling.channel.only-this" => "only through this network",
        "handling.channel.any" => "through any official channel",
        _ => "",
    }
}

/// Every translation key this module uses, with its English text: labels, values and the title.
pub fn english_labels() -> Vec<(&'static str, &'static str)> {
    let mut keys = vec![
        HANDLING_TITLE,
        ("handling.use_limited_to_case", "Use"),
        ("handling.onward_transmission", "Onward transmission"),
        ("handling.evidential_use", "As evidence"),
        ("handling.reply_channel_only", "Answers"),
        ("handling.free_text", "Other conditions"),
    ];
    for key in [
        "handling.case.limited",
        "handling.case.not-limited",
        "handling.onward.forbidden",
        "handling.onward.with-consent",
        "handling.onward.permitted",
        "handling.evidence.intelligence-only",
        "handling.evidence.with-consent",
        "handling.evidence.may-be-used",
        "handling.channel.only-this",
        "handling.channel.any",
    ] {
        keys.push((key, english(key)));
    }
    keys
}

/// Splits `text` into lines of at most `width` characters at spaces (a longer word is cut);
/// control characters become spaces.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut lines = Vec::new();
    let mut current = String::new();
    for word in clean.split(' ').filter(|word| !word.is_empty()) {
        let mut word: String = word.to_string();
        while word.chars().count() > width {
            if !current.is_empty() {
                lines.push(std::mem::take(&mut current));
            }
            let head: String = word.chars().take(width).collect();
            word = word.chars().skip(width).collect();
            lines.push(head);
        }
        let needed =
            current.chars().count() + usize::from(!current.is_empty()) + word.chars().count();
        if needed > width && !current.is_empty() {
            lines.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(&word);
    }
    if !current.is_empty() || lines.is_empty() {
        lines.push(current);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_key_has_english_text_and_every_line_uses_known_keys() {
        let labels = english_labels();
        for (key, text) in &labels {
            assert!(!text.is_empty(), "{key} has no English text");
        }
        let known: Vec<&str> = labels.iter().map(|(key, _)| *key).collect();
        for onward in [
            OnwardTransmission::Forbidden,
            OnwardTransmission::WithConsent,
            OnwardTransmission::Permitted,
        ] {
            for evidence in [
                EvidentialUse::IntelligenceOnly,
                EvidentialUse::WithConsent,
                EvidentialUse::MayBeUsedAsEvidence,
            ] {
                for flag in [true, false] {
                    let handling = Handling {
                        use_limited_to_case: flag,
                        onward_transmission: onward,
                        evidential_use: evidence,
                        reply_channel_only: !flag,
                        free_text: Some("x".into()),
                    };
                    for line in handling.labelled() {
                        assert!(known.contains(&line.label_key), "{}", line.label_key);
                        if let Some(value) = line.value_key {
                            assert!(known.contains(&value), "{value}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn the_box_names_each_condition_and_keeps_its_width() {
        let handling = Handling {
            evidential_use: EvidentialUse::IntelligenceOnly,
            onward_transmission: OnwardTransmission::Forbidden,
            free_text: Some(
                "Do not contact the hosting provider's abuse desk;\nit is compromised. ".repeat(3),
            ),
            ..Handling::default()
        };
        let lines = handling.render_box(60);
        for line in &lines {
            assert_eq!(line.chars().count(), 60, "{line:?}");
            assert!(!line.contains('\n'));
        }
        let text = lines.join("\n");
        assert!(text.contains("CONDITIONS ON USE"));
        assert!(text.contains("Onward transmission: FORBIDDEN"));
        assert!(text.contains("INTELLIGENCE ONLY"));
        assert!(text.contains("abuse desk;"));
        assert_eq!(
            handling.marker(),
            "[case-only,no-onward,intel-only,channel,+note]"
        );
        assert!(handling
            .one_line()
            .contains("onward transmission: FORBIDDEN"));
    }

    #[test]
    fn words_parse_back() {
        for onward in [
            OnwardTransmission::Forbidden,
            OnwardTransmission::WithConsent,
            OnwardTransmission::Permitted,
        ] {
            assert_eq!(OnwardTransmission::parse(onward.as_str()), Ok(onward));
        }
        for evidence in [
            EvidentialUse::IntelligenceOnly,
            EvidentialUse::WithConsent,
            EvidentialUse::MayBeUsedAsEvidence,
        ] {
            assert_eq!(EvidentialUse::parse(evidence.as_str()), Ok(evidence));
        }
        assert!(EvidentialUse::parse("maybe")
            .expect_err("an error")
            .contains("intelligence-only"));
    }
}
