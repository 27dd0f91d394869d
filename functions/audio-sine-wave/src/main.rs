//! A sine wave as a 16-bit mono PCM WAV (via `hound`): `?freq=` Hz (default
//! 440), `?duration=` seconds (default 1), `?rate=` samples/s (default 44100),
//! `?amplitude=` 0..1 (default 1). Answers the WAV (`audio/wav`), or writes it
//! to `?out=` (a path in a granted directory) and answers a one-line summary.
use std::io::Cursor;
use wisp_sdk::{Error, Request, Response};

fn main() {
    wisp_sdk::serve(|req: Request| {
        let freq: f64 = req.param_or("freq", 440.0)?;
        let duration: f64 = req.param_or("duration", 1.0)?;
        let rate: u32 = req.param_or("rate", 44_100)?;
        let amplitude: f64 = req.param_or("amplitude", 1.0)?;
        let samples = (duration * rate as f64).round();
        if !(0.0..=100_000_000.0).contains(&samples) || rate == 0 {
            return Err(Error::bad_request(
                "duration × rate must give between 0 and 100 000 000 samples",
            ));
        }
        if !(0.0..=1.0).contains(&amplitude) {
            return Err(Error::bad_request("amplitude must be between 0 and 1"));
        }
        let samples = samples as u64;
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut cursor = Cursor::new(Vec::with_capacity(44 + 2 * samples as usize));
        {
            let mut writer = hound::WavWriter::new(&mut cursor, spec)?;
            let step = 2.0 * std::f64::consts::PI * freq / rate as f64;
            let scale = amplitude * i16::MAX as f64;
            for i in 0..samples {
                writer.write_sample((libm::sin(step * i as f64) * scale) as i16)?;
            }
            writer.finalize()?;
        }
        let wav = cursor.into_inner();
        match req.param("out").filter(|o| !o.is_empty()) {
            Some(out) => {
                wisp_sdk::fs::write(out, &wav)?;
                Ok(Response::text(format!(
                    "wrote {} bytes ({samples} samples, {freq} Hz, {rate} Hz, 16-bit mono) to {out}\n",
                    wav.len()
                )))
            }
            None => Ok(Response::bytes("audio/wav", wav).header("X-Samples", samples)),
        }
    });
}
