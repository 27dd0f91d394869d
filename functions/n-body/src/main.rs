//! The Computer Language Benchmarks Game n-body: Sun + the four Jovian planets,
//! symplectic integration with dt = 0.01 for `?steps=` steps (default 1000).
//! Prints the total energy before and after (9 decimals), as the original does.
// The constants are the Benchmarks Game's, digit for digit.
#![allow(clippy::excessive_precision, clippy::needless_range_loop)]

use wisp_sdk::{Request, Response};

const PI: f64 = std::f64::consts::PI;
const SOLAR_MASS: f64 = 4.0 * PI * PI;
const DAYS_PER_YEAR: f64 = 365.24;

#[derive(Clone, Copy)]
struct Body {
    pos: [f64; 3],
    vel: [f64; 3],
    mass: f64,
}

fn bodies() -> [Body; 5] {
    let dpy = DAYS_PER_YEAR;
    [
        // Sun
        Body {
            pos: [0.0; 3],
            vel: [0.0; 3],
            mass: SOLAR_MASS,
        },
        // Jupiter
        Body {
            pos: [
                4.84143144246472090e+00,
                -1.16032004402742839e+00,
                -1.03622044471123109e-01,
            ],
            vel: [
                1.66007664274403694e-03 * dpy,
                7.69901118419740425e-03 * dpy,
                -6.90460016972063023e-05 * dpy,
            ],
            mass: 9.54791938424326609e-04 * SOLAR_MASS,
        },
        // Saturn
        Body {
            pos: [
                8.34336671824457987e+00,
                4.12479856412430479e+00,
                -4.03523417114321381e-01,
            ],
            vel: [
                -2.76742510726862411e-03 * dpy,
                4.99852801234917238e-03 * dpy,
                2.30417297573763929e-05 * dpy,
            ],
            mass: 2.85885980666130812e-04 * SOLAR_MASS,
        },
        // Uranus
        Body {
            pos: [
                1.28943695621391310e+01,
                -1.51111514016986312e+01,
                -2.23307578892655734e-01,
            ],
            vel: [
                2.96460137564761618e-03 * dpy,
                2.37847173959480950e-03 * dpy,
                -2.96589568540237556e-05 * dpy,
            ],
            mass: 4.36624404335156298e-05 * SOLAR_MASS,
        },
        // Neptune
        Body {
            pos: [
                1.53796971148509165e+01,
                -2.59193146099879641e+01,
                1.79258772950371181e-01,
            ],
            vel: [
                2.68067772490389322e-03 * dpy,
                1.62824170038242295e-03 * dpy,
                -9.51592254519715870e-05 * dpy,
            ],
            mass: 5.15138902046611451e-05 * SOLAR_MASS,
        },
    ]
}

fn offset_momentum(b: &mut [Body; 5]) {
    let mut p = [0.0; 3];
    for body in b.iter() {
        for k in 0..3 {
            p[k] += body.vel[k] * body.mass;
        }
    }
    for k in 0..3 {
        b[0].vel[k] = -p[k] / SOLAR_MASS;
    }
}

fn energy(b: &[Body; 5]) -> f64 {
    let mut e = 0.0;
    for i in 0..b.len() {
        let bi = &b[i];
        e +=
            0.5 * bi.mass * (bi.vel[0] * bi.vel[0] + bi.vel[1] * bi.vel[1] + bi.vel[2] * bi.vel[2]);
        for bj in &b[i + 1..] {
            let d = [
                bi.pos[0] - bj.pos[0],
                bi.pos[1] - bj.pos[1],
                bi.pos[2] - bj.pos[2],
            ];
            e -= bi.mass * bj.mass / (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt();
        }
    }
    e
}

fn advance(b: &mut [Body; 5], dt: f64) {
    for i in 0..b.len() {
        let (left, right) = b.split_at_mut(i + 1);
        let bi = &mut left[i];
        for bj in right.iter_mut() {
            let d = [
                bi.pos[0] - bj.pos[0],
                bi.pos[1] - bj.pos[1],
                bi.pos[2] - bj.pos[2],
            ];
            let d2 = d[0] * d[0] + d[1] * d[1] + d[2] * d[2];
            let mag = dt / (d2 * d2.sqrt());
            for k in 0..3 {
                bi.vel[k] -= d[k] * bj.mass * mag;
                bj.vel[k] += d[k] * bi.mass * mag;
            }
        }
    }
    for body in b.iter_mut() {
        for k in 0..3 {
            body.pos[k] += dt * body.vel[k];
        }
    }
}

fn main() {
    wisp_sdk::serve(|req: Request| {
        let steps: u64 = req.param_or("steps", 1000)?;
        let mut b = bodies();
        offset_momentum(&mut b);
        let before = energy(&b);
        for _ in 0..std::hint::black_box(steps) {
            advance(&mut b, 0.01);
        }
        let after = energy(&b);
        Ok(Response::text(format!("{before:.9}\n{after:.9}\n")))
    });
}
