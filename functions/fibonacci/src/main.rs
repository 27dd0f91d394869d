//! Recursive Fibonacci (deliberately exponential: a pure CPU/call-overhead
//! benchmark). Action style: input `{"n": 32}` from the JSON body and/or `?n=`,
//! output `{"n": 32, "result": 2178309}`.
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
#[serde(default)]
struct Input {
    n: u32,
}

impl Default for Input {
    fn default() -> Self {
        Input { n: 32 }
    }
}

#[derive(Serialize)]
struct Output {
    n: u32,
    result: u64,
}

fn fib(n: u32) -> u64 {
    if n < 2 {
        n as u64
    } else {
        fib(n - 1) + fib(n - 2)
    }
}

fn main() {
    wisp_sdk::json(|input: Input| {
        if input.n > 93 {
            return Err(wisp_sdk::Error::bad_request(format!(
                "n={} is too large: fib(n) overflows u64 above 93",
                input.n
            )));
        }
        let result = fib(std::hint::black_box(input.n));
        Ok(Output { n: input.n, result })
    });
}
