//! FunctionBench `pyaes`, CFB flavour: a random alphanumeric message of
//! `?length=` characters (default 1000), key and IV all drawn from a ChaCha8
//! RNG seeded with `?seed=` (default 42), is AES-128-CFB encrypted and decrypted
//! `?iterations=` times (default 100); every round trip is checked.
use aes::Aes128;
use cfb_mode::cipher::{AsyncStreamCipher, KeyIvInit};
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use std::fmt::Write;
use wisp_sdk::{Error, Request, Response};

type Enc = cfb_mode::Encryptor<Aes128>;
type Dec = cfb_mode::Decryptor<Aes128>;

const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

fn main() {
    wisp_sdk::serve(|req: Request| {
        let length: usize = req.param_or("length", 1000)?;
        let iterations: u64 = req.param_or("iterations", 100)?;
        let seed: u64 = req.param_or("seed", 42)?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut key = [0u8; 16];
        let mut iv = [0u8; 16];
        rng.fill_bytes(&mut key);
        rng.fill_bytes(&mut iv);
        let message: Vec<u8> = (0..length)
            .map(|_| ALPHABET[(rng.next_u32() % ALPHABET.len() as u32) as usize])
            .collect();

        let mut ciphertext = Vec::new();
        for _ in 0..iterations {
            let mut buf = std::hint::black_box(message.clone());
            Enc::new(&key.into(), &iv.into()).encrypt(&mut buf);
            ciphertext.clone_from(&buf);
            Dec::new(&key.into(), &iv.into()).decrypt(&mut buf);
            if buf != message {
                return Err(Error::msg("decrypted text differs from the plaintext"));
            }
        }
        let mut head = String::new();
        for b in ciphertext.iter().take(16) {
            let _ = write!(head, "{b:02x}");
        }
        Ok(Response::text(format!(
            "aes-128-cfb length={length} iterations={iterations} seed={seed} ok ciphertext[..16]={head}\n"
        )))
    });
}
