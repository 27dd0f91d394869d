//! `user-manager`: the user-management function of the K8s orchestration
//! study as a `wasi:http/proxy` component. It makes `entries` (default 1,
//! at most 1000) fake person records and writes each to a database service
//! over HTTP — `PUT {DB_URL}/users/{id}.json` with the record as JSON — then
//! answers 201 `{"created": [records...]}`.
//!
//! Parameters (query string): `db` (overrides the `DB_URL` environment
//! variable, i.e. the host config), `entries` (default 1), `seed` (default 42).
//! Record `i` is generated from a ChaCha8 RNG seeded with `seed + i`, so the
//! output is the same on every run and every host (no clock, no OS entropy):
//! `id` (UUID-v4-shaped, from the RNG), `first_name`, `last_name`, `email`,
//! `phone`, `address`, `created` (an RFC 3339 time in 2024, from the RNG).
//!
//! Errors: no database configured → 500; the database unreachable, denied,
//! or answering anything but 200/201/204 → 502 (records written before the
//! failure stay written); a bad parameter → 400.
use fake::Fake;
use fake::faker::address::en::{BuildingNumber, CityName, StateAbbr, StreetName, ZipCode};
use fake::faker::name::en::{FirstName, LastName};
use fake::faker::phone_number::en::PhoneNumber;
use fake::rand::rngs::ChaCha8Rng;
use fake::rand::{RngExt, SeedableRng};
use serde::Serialize;
use wisp_http_guest::wasi;
use wisp_http_guest::{Params, split_path, text};

use wasi::exports::http::incoming_handler::Guest;
use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct UserManager;

wasi::http::proxy::export!(UserManager);

const MAX_ENTRIES: u32 = 1000;

impl Guest for UserManager {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path_with_query = request.path_with_query();
        let (_, query) = split_path(path_with_query.as_deref());
        match run(&Params::parse(query)) {
            Ok(body) => wisp_http_guest::json(out, 201, body.as_bytes()),
            Err((status, msg)) => text(out, status, &msg),
        }
    }
}

#[derive(Debug, Serialize)]
struct User {
    id: String,
    first_name: String,
    last_name: String,
    email: String,
    phone: String,
    address: String,
    created: String,
}

fn run(params: &Params) -> Result<String, (u16, String)> {
    let bad = |e: String| (400, e);
    let entries: u32 = params.parse_or("entries", 1).map_err(bad)?;
    let seed: u64 = params.parse_or("seed", 42).map_err(bad)?;
    if entries > MAX_ENTRIES {
        return Err((400, format!("entries must be at most {MAX_ENTRIES}\n")));
    }
    let db = match params.get("db") {
        Some(s) => s.to_string(),
        None => std::env::var("DB_URL").ok().filter(|s| !s.is_empty()).ok_or_else(|| {
            (
                500,
                "no database configured: set DB_URL in the function's environment or pass ?db=<base URL>\n"
                    .to_string(),
            )
        })?,
    };
    let db = db.trim_end_matches('/');

    let mut created = Vec::with_capacity(entries as usize);
    for i in 0..entries {
        let user = fake_user(seed.wrapping_add(u64::from(i)));
        let body = serde_json::to_vec(&user).expect("a record serializes");
        let url = format!("{db}/users/{}.json", user.id);
        match wisp_http_guest::put(&url, "application/json", &body) {
            Ok(200 | 201 | 204) => created.push(user),
            Ok(status) => {
                return Err((
                    502,
                    format!(
                        "database answered {status} for PUT {url} (record {} of {entries})\n",
                        i + 1
                    ),
                ));
            }
            Err(e) => {
                return Err((
                    502,
                    format!(
                        "database request failed: PUT {url}: {e} (record {} of {entries})\n",
                        i + 1
                    ),
                ));
            }
        }
    }
    Ok(serde_json::json!({ "created": created }).to_string())
}

/// One record, a pure function of `seed`.
fn fake_user(seed: u64) -> User {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let bits: u128 = rng.random();
    // UUID version 4 layout (version nibble 4, variant 10xx).
    let bits = (bits & !(0xf << 76) | (0x4 << 76)) & !(0x3 << 62) | (0x2 << 62);
    let hex = format!("{bits:032x}");
    let id = format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    );

    let first_name: String = FirstName().fake_with_rng(&mut rng);
    let last_name: String = LastName().fake_with_rng(&mut rng);
    let domain = ["example.com", "example.org", "example.net"][rng.random_range(0..3)];
    let email = format!(
        "{}.{}{}@{domain}",
        email_part(&first_name),
        email_part(&last_name),
        rng.random_range(1..100u32)
    );
    let phone: String = PhoneNumber().fake_with_rng(&mut rng);
    let address = format!(
        "{} {}, {}, {} {}",
        BuildingNumber().fake_with_rng::<String, _>(&mut rng),
        StreetName().fake_with_rng::<String, _>(&mut rng),
        CityName().fake_with_rng::<String, _>(&mut rng),
        StateAbbr().fake_with_rng::<String, _>(&mut rng),
        ZipCode().fake_with_rng::<String, _>(&mut rng),
    );
    // Some second of 2024 (UTC).
    const START_2024: i64 = 1_704_067_200;
    let created = rfc3339(START_2024 + rng.random_range(0..366 * 86_400i64));
    User {
        id,
        first_name,
        last_name,
        email,
        phone,
        address,
        created,
    }
}

fn email_part(s: &str) -> String {
    s.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// `YYYY-MM-DDTHH:MM:SSZ` for Unix seconds (proleptic Gregorian, UTC).
fn rfc3339(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_704_067_200), "2024-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_709_251_199), "2024-02-29T23:59:59Z");
        assert_eq!(rfc3339(1_735_689_599), "2024-12-31T23:59:59Z");
    }

    #[test]
    fn deterministic_records() {
        let (a, b) = (fake_user(42), fake_user(42));
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            serde_json::to_string(&b).unwrap()
        );
        assert_ne!(a.id, fake_user(43).id);
        assert_eq!(a.id.len(), 36);
        assert_eq!(&a.id[14..15], "4");
        assert!(a.email.contains('@') && a.created.starts_with("2024-"));
        eprintln!("{}", serde_json::to_string_pretty(&a).unwrap());
    }
}
