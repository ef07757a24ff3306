//! Password hashing with Argon2id (PHC string format, salt from the OS RNG).
//! Hashing and verifying are CPU-bound and run on tokio's blocking pool.
//!
//! Invariant: at most [`max_concurrent`] hashes or verifications run at once
//! in the process. Each one allocates its Argon2 memory cost (19 MiB by
//! default) for its duration; without the bound, a burst of registrations or
//! logins ran one hash per blocking thread (up to 512), and the allocator
//! kept the peak (measured: 1.7 GiB RSS after 100 concurrent registrations,
//! see `docs/perf-log/2026-11-22.md`, "Memory"). Extra requests wait in
//! FIFO order for a permit; with as many hashes as cores the CPU is
//! saturated anyway, so the bound costs no throughput.

use std::future::Future;
use std::sync::OnceLock;

use argon2::password_hash::{Output, ParamsString, PasswordHash, Salt, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

use super::config::PasswordHashing;
use crate::random::Random;

/// Most hashes or verifications running at once: the number of CPUs the
/// process may use (`std::thread::available_parallelism`, 1 if unknown).
pub fn max_concurrent() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// The process-wide bound on concurrent hashing.
fn permits() -> &'static Semaphore {
    static PERMITS: OnceLock<Semaphore> = OnceLock::new();
    PERMITS.get_or_init(|| Semaphore::new(max_concurrent()))
}

/// Runs `work` on the blocking pool once a hashing permit is free.
async fn bounded<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    let _permit = permits()
        .acquire()
        .await
        .expect("the hashing semaphore is never closed");
    tokio::task::spawn_blocking(work)
        .await
        .expect("hashing task does not panic")
}

/// Hashes `password` with `cost` and a 16-byte salt drawn from `random`
/// when called, returning the PHC string.
pub fn hash(
    password: String,
    cost: PasswordHashing,
    random: &Random,
) -> impl Future<Output = String> + Send + use<> {
    let mut salt = [0u8; 16];
    random.fill(&mut salt);
    bounded(move || hash_blocking(&password, cost, salt))
}

fn hash_blocking(password: &str, cost: PasswordHashing, salt: [u8; 16]) -> String {
    let params = Params::new(cost.memory_kib, cost.iterations, cost.parallelism, None)
        .expect("PasswordHashing holds valid Argon2 parameters");
    let salt = SaltString::encode_b64(&salt).expect("16-byte salt encodes");
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let output = compute(&argon2, &params, password.as_bytes(), salt.as_salt())
        .expect("hashing with valid parameters succeeds");
    PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).expect("valid parameters encode"),
        salt: Some(salt.as_salt()),
        hash: Some(output),
    }
    .to_string()
}

/// Whether `password` matches the PHC string `stored` (parameters are read
/// from the string). A malformed `stored` never matches.
pub async fn verify(password: String, stored: String) -> bool {
    bounded(move || verify_blocking(&password, &stored)).await
}

fn verify_blocking(password: &str, stored: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm) else {
        return false;
    };
    let Ok(version) = parsed
        .version
        .map_or(Ok(Version::default()), Version::try_from)
    else {
        return false;
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    let argon2 = Argon2::new(algorithm, version, params.clone());
    // `Output`'s equality is constant-time.
    compute(&argon2, &params, password.as_bytes(), salt).is_ok_and(|output| output == expected)
}

/// The Argon2 output of `password` with `salt` (its Base64 form decoded, as
/// the PHC format stores it), computed in memory mapped for this call only.
fn compute(
    argon2: &Argon2<'_>,
    params: &Params,
    password: &[u8],
    salt: Salt<'_>,
) -> argon2::password_hash::Result<Output> {
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_bytes)?;
    let output_len = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    let mut memory = memory::Blocks::new(params.block_count());
    Output::init_with(output_len, |out| {
        Ok(argon2.hash_password_into_with_memory(password, salt_bytes, out, memory.as_mut())?)
    })
}

/// Argon2's working memory, mapped from and unmapped back to the OS for
/// each hash. Through the allocator, glibc kept every freed 19 MiB block in
/// its per-thread arenas (allocations of this size stop being mmapped after
/// the first is freed), so RSS grew with the number of blocking threads that
/// ever hashed; an explicit mapping is returned at once.
#[cfg(unix)]
mod memory {
    use argon2::Block;

    /// `len` zeroed blocks in an anonymous private mapping.
    pub(super) struct Blocks {
        ptr: *mut Block,
        len: usize,
    }

    // SAFETY: `Blocks` owns its mapping exclusively, like a `Vec<Block>`.
    unsafe impl Send for Blocks {}

    impl Blocks {
        /// Maps `len` blocks. Panics if the OS refuses (out of memory), as
        /// the allocator would.
        pub(super) fn new(len: usize) -> Blocks {
            let bytes = len.max(1) * size_of::<Block>();
            // SAFETY: an anonymous private mapping with no address hint
            // aliases nothing; the result is checked before use.
            let ptr = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    bytes,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            assert!(
                ptr != libc::MAP_FAILED,
                "mapping {bytes} bytes of Argon2 memory: {}",
                std::io::Error::last_os_error()
            );
            Blocks {
                ptr: ptr.cast(),
                len,
            }
        }
    }

    impl AsMut<[Block]> for Blocks {
        fn as_mut(&mut self) -> &mut [Block] {
            // SAFETY: the mapping is page-aligned (more than `Block`'s 64),
            // `len` blocks long, zero-filled (a valid `Block`: plain u64s)
            // and borrowed mutably through `self` only.
            unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
        }
    }

    impl Drop for Blocks {
        fn drop(&mut self) {
            let bytes = self.len.max(1) * size_of::<Block>();
            // SAFETY: unmaps exactly the mapping made in `new`, once.
            unsafe {
                libc::munmap(self.ptr.cast(), bytes);
            }
        }
    }
}

/// Argon2's working memory from the allocator, where no mapping is at hand.
#[cfg(not(unix))]
mod memory {
    use argon2::Block;

    pub(super) struct Blocks(Vec<Block>);

    impl Blocks {
        pub(super) fn new(len: usize) -> Blocks {
            Blocks(vec![Block::default(); len])
        }
    }

    impl AsMut<[Block]> for Blocks {
        fn as_mut(&mut self) -> &mut [Block] {
            &mut self.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_verifies_and_salts() {
        let cost = PasswordHashing::FAST_INSECURE;
        let random = Random::os();
        let a = hash("hunter2".into(), cost, &random).await;
        let b = hash("hunter2".into(), cost, &random).await;
        assert!(a.starts_with("$argon2id$"));
        assert_ne!(a, b, "salted");
        assert!(verify("hunter2".into(), a.clone()).await);
        assert!(!verify("hunter3".into(), a).await);
        assert!(!verify("hunter2".into(), "not a hash".into()).await);
    }

    #[tokio::test]
    async fn the_salt_comes_from_the_injected_source() {
        let cost = PasswordHashing::FAST_INSECURE;
        let seeded = |seed| hash("hunter2".into(), cost, &Random::seeded(seed));
        let a = seeded(1).await;
        assert_eq!(a, seeded(1).await);
        assert_ne!(a, seeded(2).await);
        assert!(verify("hunter2".into(), a).await);
    }

    #[tokio::test]
    async fn agrees_with_the_argon2_crate_both_ways() {
        use argon2::password_hash::PasswordVerifier;
        let cost = PasswordHashing::FAST_INSECURE;
        let params = Params::new(cost.memory_kib, cost.iterations, cost.parallelism, None).unwrap();
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let theirs = argon2::password_hash::PasswordHasher::hash_password(
            &Argon2::new(Algorithm::Argon2id, Version::V0x13, params),
            b"hunter2",
            &salt,
        )
        .unwrap()
        .to_string();
        assert!(verify("hunter2".into(), theirs.clone()).await);
        assert!(!verify("hunter3".into(), theirs).await);
        let ours = hash("hunter2".into(), cost, &Random::os()).await;
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"hunter2", &parsed)
                .is_ok()
        );
        assert!(
            Argon2::default()
                .verify_password(b"hunter3", &parsed)
                .is_err()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn many_concurrent_hashes_all_complete_under_the_bound() {
        let cost = PasswordHashing::FAST_INSECURE;
        let random = Random::os();
        let tasks: Vec<_> = (0..4 * max_concurrent() + 3)
            .map(|i| tokio::spawn(hash(format!("pw{i}"), cost, &random)))
            .collect();
        for (i, t) in tasks.into_iter().enumerate() {
            let h = t.await.expect("task");
            assert!(verify(format!("pw{i}"), h).await);
        }
    }
}
