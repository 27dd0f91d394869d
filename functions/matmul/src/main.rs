//! FunctionBench `matmul`: C = A·B for two N×N matrices (default N = 500) of
//! standard-normal values drawn from a ChaCha8 RNG seeded with `?seed=`
//! (default 42) via Box–Muller (`libm` log/sin/cos, so native and Wasm agree
//! bit for bit). Classic i-k-j triple loop. Prints the sum of C and its trace.
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use wisp_sdk::{Error, Request, Response};

/// Standard-normal samples (Box–Muller) from a seeded ChaCha8 stream.
struct Normal {
    rng: ChaCha8Rng,
    spare: Option<f64>,
}

impl Normal {
    fn new(seed: u64) -> Normal {
        Normal {
            rng: ChaCha8Rng::seed_from_u64(seed),
            spare: None,
        }
    }
    fn unit(&mut self) -> f64 {
        (self.rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
    fn next(&mut self) -> f64 {
        if let Some(z) = self.spare.take() {
            return z;
        }
        let u1 = 1.0 - self.unit(); // (0, 1]
        let u2 = self.unit();
        let r = (-2.0 * libm::log(u1)).sqrt();
        let t = 2.0 * std::f64::consts::PI * u2;
        self.spare = Some(r * libm::sin(t));
        r * libm::cos(t)
    }
}

fn main() {
    wisp_sdk::serve(|req: Request| {
        let n: usize = req.param_or("dimensions", 500)?;
        let seed: u64 = req.param_or("seed", 42)?;
        if n == 0 || n > 8192 {
            return Err(Error::bad_request(format!(
                "dimensions={n} must be between 1 and 8192"
            )));
        }
        let mut normal = Normal::new(seed);
        let a: Vec<f64> = (0..n * n).map(|_| normal.next()).collect();
        let b: Vec<f64> = (0..n * n).map(|_| normal.next()).collect();
        let mut c = vec![0.0f64; n * n];
        for i in 0..n {
            let row = &mut c[i * n..(i + 1) * n];
            for k in 0..n {
                let aik = a[i * n + k];
                let brow = &b[k * n..(k + 1) * n];
                for (cij, bkj) in row.iter_mut().zip(brow) {
                    *cij += aik * bkj;
                }
            }
        }
        let checksum: f64 = c.iter().sum();
        let trace: f64 = (0..n).map(|i| c[i * n + i]).sum();
        Ok(Response::text(format!(
            "matmul {n}x{n} seed={seed} checksum={checksum} trace={trace}\n"
        )))
    });
}
