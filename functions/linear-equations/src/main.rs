//! FunctionBench `linpack`: solves A·x = b for N unknowns (default N = 500),
//! A and b standard-normal from a ChaCha8 RNG seeded with `?seed=` (default 42),
//! by LU decomposition with partial pivoting. Prints the residual
//! max|A·x − b| and the checksum Σx; the elapsed time and MFLOP/s go to stderr.
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

/// In-place LU with partial pivoting, then forward/back substitution.
fn solve(mut a: Vec<f64>, mut b: Vec<f64>, n: usize) -> Result<Vec<f64>, Error> {
    for k in 0..n {
        let p = (k..n)
            .max_by(|&i, &j| a[i * n + k].abs().total_cmp(&a[j * n + k].abs()))
            .unwrap_or(k);
        if a[p * n + k] == 0.0 {
            return Err(Error::msg("the matrix is singular"));
        }
        if p != k {
            for j in 0..n {
                a.swap(k * n + j, p * n + j);
            }
            b.swap(k, p);
        }
        let pivot = a[k * n + k];
        for i in k + 1..n {
            let f = a[i * n + k] / pivot;
            a[i * n + k] = f;
            if f != 0.0 {
                let (top, bottom) = a.split_at_mut(i * n);
                let krow = &top[k * n + k + 1..k * n + n];
                let irow = &mut bottom[k + 1..n];
                for (x, y) in irow.iter_mut().zip(krow) {
                    *x -= f * y;
                }
                b[i] -= f * b[k];
            }
        }
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        let s: f64 = (i + 1..n).map(|j| a[i * n + j] * x[j]).sum();
        x[i] = (b[i] - s) / a[i * n + i];
    }
    Ok(x)
}

fn main() {
    wisp_sdk::serve(|req: Request| {
        let n: usize = req.param_or("unknowns", 500)?;
        let seed: u64 = req.param_or("seed", 42)?;
        if n == 0 || n > 8192 {
            return Err(Error::bad_request(format!(
                "unknowns={n} must be between 1 and 8192"
            )));
        }
        let mut normal = Normal::new(seed);
        let a: Vec<f64> = (0..n * n).map(|_| normal.next()).collect();
        let b: Vec<f64> = (0..n).map(|_| normal.next()).collect();
        let start = std::time::Instant::now();
        let x = solve(a.clone(), b.clone(), n)?;
        let secs = start.elapsed().as_secs_f64();
        let residual = (0..n)
            .map(|i| {
                let ax: f64 = a[i * n..(i + 1) * n]
                    .iter()
                    .zip(&x)
                    .map(|(aij, xj)| aij * xj)
                    .sum();
                (ax - b[i]).abs()
            })
            .fold(0.0f64, f64::max);
        let checksum: f64 = x.iter().sum();
        let flops = 2.0 / 3.0 * (n as f64).powi(3) + 2.0 * (n as f64).powi(2);
        eprintln!(
            "linear-equations: n={n} solved in {:.3} ms ({:.1} MFLOP/s)",
            secs * 1e3,
            flops / secs / 1e6
        );
        Ok(Response::text(format!(
            "linear-equations n={n} seed={seed} residual={residual:e} checksum={checksum}\n"
        )))
    });
}
