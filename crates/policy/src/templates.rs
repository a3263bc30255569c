//! Built-in sector templates, in the text syntax (the files are in `templates/`).
//!
//! | name | data | gist |
//! |---|---|---|
//! | `power` | smart-meter load data | grid planning by power-sector consumers; aggregated-only for finance; anonymize |
//! | `transport` | traffic flow | urban planning and navigation, at most 10,000 uses, attribute |
//! | `weather` | forecasts | renewable forecasting and transport safety, no redistribution, priced per GiB |
//! | `finance` | credit data (`important`) | licensed banks, delete within 30 days, no cross-border |
//! | `healthcare` | records (`sensitive`) | medical research only, consent and anonymization, stays in CN, no model training |
//! | `licence` | public data | the authority's operation licence: scope, purposes, price schedule, term |

/// The template names, in the order above.
pub const NAMES: [&str; 6] = [
    "power",
    "transport",
    "weather",
    "finance",
    "healthcare",
    "licence",
];

/// The text of a template, if `name` is one.
pub fn template(name: &str) -> Option<&'static str> {
    Some(match name {
        "power" => include_str!("../templates/power.tdsp"),
        "transport" => include_str!("../templates/transport.tdsp"),
        "weather" => include_str!("../templates/weather.tdsp"),
        "finance" => include_str!("../templates/finance.tdsp"),
        "healthcare" => include_str!("../templates/healthcare.tdsp"),
        "licence" | "public-data" => include_str!("../templates/licence.tdsp"),
        _ => return None,
    })
}
