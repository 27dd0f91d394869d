//! FunctionBench `float_operation`: sin, cos and sqrt of 0..n (default
//! n = 10 000 000), summed so nothing is optimized away. sin/cos come from the
//! pure-Rust `libm` crate so the native and Wasm builds print bit-identical sums
//! (the platforms' C math libraries may differ in the last ulp).
use wisp_sdk::{Request, Response};

fn main() {
    wisp_sdk::serve(|req: Request| {
        let n: u64 = req.param_or("n", 10_000_000)?;
        let (mut s, mut c, mut q) = (0.0f64, 0.0f64, 0.0f64);
        for i in 0..std::hint::black_box(n) {
            let x = i as f64;
            s += libm::sin(x);
            c += libm::cos(x);
            q += x.sqrt();
        }
        Ok(Response::text(format!(
            "float-operation n={n} sum={}\nsin={s} cos={c} sqrt={q}\n",
            s + c + q
        )))
    });
}
