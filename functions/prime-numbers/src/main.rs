//! All primes up to `?n=` (default 100), by trial division with odd divisors up
//! to the square root. First line: the count; second: the primes.
use std::fmt::Write;
use wisp_sdk::{Request, Response};

fn primes_up_to(max: u64) -> Vec<u64> {
    let mut primes = Vec::new();
    if max >= 2 {
        primes.push(2);
    }
    let mut i = 3;
    while i <= max {
        let mut is_prime = true;
        let mut j = 3;
        while j * j <= i {
            if i % j == 0 {
                is_prime = false;
                break;
            }
            j += 2;
        }
        if is_prime {
            primes.push(i);
        }
        i += 2;
    }
    primes
}

fn main() {
    wisp_sdk::serve(|req: Request| {
        let n: u64 = req.param_or("n", 100)?;
        let primes = primes_up_to(std::hint::black_box(n));
        let mut out = format!("{} primes <= {n}\n", primes.len());
        for (i, p) in primes.iter().enumerate() {
            let sep = if i == 0 { "" } else { " " };
            let _ = write!(out, "{sep}{p}");
        }
        out.push('\n');
        Ok(Response::text(out))
    });
}
