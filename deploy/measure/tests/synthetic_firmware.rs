//! The measurements on small firmware images built here, where every input
//! is known: which sections count, in which order, and that malformed
//! tables are typed errors (never panics), down to every truncation.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation
)]

use cloister_measure::MeasureError;
use cloister_measure::firmware::Firmware;
use cloister_measure::snp::{KernelHashes, SnpLaunch, launch_digest};
use cloister_measure::tdx::{PageOrder, mrtd, rtmr2};

fn guid(text: &str) -> [u8; 16] {
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    let mut b = [0u8; 16];
    hex::decode_to_slice(hex, &mut b).expect("hex");
    b[0..4].reverse();
    b[4..6].reverse();
    b[6..8].reverse();
    b
}

/// A TDVF section: data offset, raw size, GPA, memory size, type, attributes.
type Tdvf = (u32, u32, u64, u64, u32, u32);

/// A 64 KiB image: `code` pages of payload, then the metadata, then the
/// footer table ending 32 bytes before the end.
fn image(tdvf: &[Tdvf], sev: &[(u32, u32, u32)], hash_table_gpa: u32, fill: u8) -> Vec<u8> {
    let len = 0x10000usize;
    let mut img = vec![fill; len];
    // TDVF metadata at 0x8000, ASEV at 0x9000.
    let mut t = Vec::new();
    t.extend_from_slice(b"TDVF");
    t.extend_from_slice(&(16 + 32 * tdvf.len() as u32).to_le_bytes());
    t.extend_from_slice(&1u32.to_le_bytes());
    t.extend_from_slice(&(tdvf.len() as u32).to_le_bytes());
    for &(off, raw, gpa, mem, kind, attr) in tdvf {
        for v in [off, raw] {
            t.extend_from_slice(&v.to_le_bytes());
        }
        for v in [gpa, mem] {
            t.extend_from_slice(&v.to_le_bytes());
        }
        for v in [kind, attr] {
            t.extend_from_slice(&v.to_le_bytes());
        }
    }
    img[0x8000..0x8000 + t.len()].copy_from_slice(&t);
    let mut a = Vec::new();
    a.extend_from_slice(b"ASEV");
    a.extend_from_slice(&(16 + 12 * sev.len() as u32).to_le_bytes());
    a.extend_from_slice(&1u32.to_le_bytes());
    a.extend_from_slice(&(sev.len() as u32).to_le_bytes());
    for &(gpa, size, kind) in sev {
        for v in [gpa, size, kind] {
            a.extend_from_slice(&v.to_le_bytes());
        }
    }
    img[0x9000..0x9000 + a.len()].copy_from_slice(&a);
    // Footer table entries: data, size u16, GUID; the footer last.
    let mut table = Vec::new();
    let mut entry = |data: &[u8], g: &str| {
        table.extend_from_slice(data);
        table.extend_from_slice(&((data.len() + 18) as u16).to_le_bytes());
        table.extend_from_slice(&guid(g));
    };
    entry(
        &((len - 0x8000) as u32).to_le_bytes(),
        "e47a6535-984a-4798-865e-4685a7bf8ec2",
    );
    entry(
        &((len - 0x9000) as u32).to_le_bytes(),
        "dc886566-984a-4798-a75e-5585a7bf67cc",
    );
    entry(
        &0x00ff_f000u32.to_le_bytes(),
        "00f771de-1a7e-4fcb-890e-68c77e2fb44e",
    );
    entry(
        &[hash_table_gpa.to_le_bytes(), 0x400u32.to_le_bytes()].concat(),
        "7255371f-3a3b-4b04-927b-1da6efa8d454",
    );
    let total = table.len() + 18;
    table.extend_from_slice(&(total as u16).to_le_bytes());
    table.extend_from_slice(&guid("96b582de-1fb2-45f7-baea-a366c55a082d"));
    let end = len - 32;
    img[end - table.len()..end].copy_from_slice(&table);
    img
}

const BFV: Tdvf = (0, 0x4000, 0xffff_0000, 0x4000, 0, 1);
const HOB: Tdvf = (0, 0, 0x80_9000, 0x2000, 2, 0);
const AUG: Tdvf = (0, 0, 0x90_0000, 0x10_0000, 3, 2);
const SEV: &[(u32, u32, u32)] = &[
    (0x80_0000, 0x2000, 1),
    (0x80_2000, 0x1000, 2),
    (0x80_3000, 0x1000, 3),
    (0x80_4000, 0x1000, 0x10),
];

#[test]
fn mrtd_covers_measured_bytes_and_added_pages_only() {
    let base = image(&[BFV, HOB], SEV, 0x80_4100, 0xaa);
    let m = mrtd(&base, PageOrder::PerPage).expect("mrtd");
    // A byte inside the measured section changes MRTD; one outside does not.
    let mut inside = base.clone();
    inside[0x1234] ^= 1;
    assert_ne!(mrtd(&inside, PageOrder::PerPage).expect("mrtd"), m);
    let mut outside = base.clone();
    outside[0x6000] ^= 1;
    assert_eq!(mrtd(&outside, PageOrder::PerPage).expect("mrtd"), m);
    // A PAGE.AUG section is not added: it leaves MRTD as it was.
    assert_eq!(
        mrtd(
            &image(&[BFV, HOB, AUG], SEV, 0x80_4100, 0xaa),
            PageOrder::PerPage
        )
        .expect("mrtd"),
        m
    );
    // An added (unmeasured) page counts by its address.
    let moved = (0, 0, 0x80_a000, 0x2000, 2, 0);
    assert_ne!(
        mrtd(
            &image(&[BFV, moved], SEV, 0x80_4100, 0xaa),
            PageOrder::PerPage
        )
        .expect("mrtd"),
        m
    );
    // The two page orders differ once a measured section has several pages.
    assert_ne!(mrtd(&base, PageOrder::PerSection).expect("mrtd"), m);
    let one_page = (0, 0x1000, 0xffff_0000, 0x1000, 0, 1);
    let single = image(&[one_page], SEV, 0x80_4100, 0xaa);
    assert_eq!(
        mrtd(&single, PageOrder::PerSection),
        mrtd(&single, PageOrder::PerPage)
    );
}

fn snp(img: &[u8], vcpus: u32, kernel: Option<KernelHashes>) -> Result<[u8; 48], MeasureError> {
    launch_digest(&SnpLaunch {
        ovmf: img,
        vcpus,
        vcpu_signature: 0xa00f11,
        guest_features: 1,
        kernel,
    })
}

#[test]
fn snp_digest_depends_on_every_input() {
    let img = image(&[BFV], SEV, 0x80_4100, 0xaa);
    let k = KernelHashes::new([1; 32], Some([2; 32]), "console=ttyS0");
    let base = snp(&img, 2, Some(k)).expect("digest");
    assert_ne!(snp(&img, 3, Some(k)).expect("digest"), base, "vCPU count");
    assert_ne!(snp(&img, 2, None).expect("digest"), base, "kernel");
    assert_ne!(
        snp(
            &img,
            2,
            Some(KernelHashes::new([1; 32], Some([2; 32]), "console=ttyS1"))
        )
        .expect("d"),
        base,
        "cmdline"
    );
    assert_ne!(
        snp(&image(&[BFV], SEV, 0x80_4200, 0xaa), 2, Some(k)).expect("d"),
        base,
        "table offset"
    );
    assert_ne!(
        snp(&image(&[BFV], SEV, 0x80_4100, 0xab), 2, Some(k)).expect("d"),
        base,
        "firmware bytes"
    );
    let sig = launch_digest(&SnpLaunch {
        ovmf: &img,
        vcpus: 2,
        vcpu_signature: 0xa10f10,
        guest_features: 1,
        kernel: Some(k),
    });
    assert_ne!(sig.expect("digest"), base, "vCPU type");
    // Without a kernel hashes section a kernel cannot be measured.
    let no_hashes = image(&[BFV], &SEV[..3], 0x80_4100, 0xaa);
    assert_eq!(
        snp(&no_hashes, 2, Some(k)),
        Err(MeasureError::NoKernelHashes)
    );
    // A table that would cross its page is refused.
    assert!(matches!(
        snp(&image(&[BFV], SEV, 0x80_4fc0, 0xaa), 2, Some(k)),
        Err(MeasureError::BadMetadata { .. })
    ));
}

#[test]
fn malformed_tables_are_typed_errors() {
    let good = image(&[BFV, HOB], SEV, 0x80_4100, 0xaa);
    // Unknown versions.
    let mut v2 = good.clone();
    v2[0x8008] = 2;
    assert!(matches!(
        mrtd(&v2, PageOrder::PerPage),
        Err(MeasureError::BadMetadata { .. })
    ));
    let mut v2 = good.clone();
    v2[0x9008] = 2;
    assert!(matches!(
        snp(&v2, 1, None),
        Err(MeasureError::BadMetadata { .. })
    ));
    // A section count the length does not hold.
    let mut count = good.clone();
    count[0x800c] = 9;
    assert!(matches!(
        mrtd(&count, PageOrder::PerPage),
        Err(MeasureError::BadMetadata { .. })
    ));
    // An unknown SEV section type.
    let mut kind = good.clone();
    kind[0x9010 + 8] = 7;
    assert!(matches!(
        snp(&kind, 1, None),
        Err(MeasureError::BadMetadata { .. })
    ));
    // Sections that run past the image.
    let past = image(
        &[(0xf000, 0x2000, 0xffff_0000, 0x2000, 0, 1)],
        SEV,
        0x80_4100,
        0,
    );
    assert!(matches!(
        mrtd(&past, PageOrder::PerPage),
        Err(MeasureError::BadMetadata { .. })
    ));
    // Misaligned memory.
    let odd = image(&[(0, 0, 0x80_9010, 0x1000, 2, 0)], SEV, 0x80_4100, 0);
    assert!(matches!(
        mrtd(&odd, PageOrder::PerPage),
        Err(MeasureError::BadMetadata { .. })
    ));
    // Zero vCPUs.
    assert!(matches!(snp(&good, 0, None), Err(MeasureError::Shape(_))));
}

#[test]
fn every_truncation_and_bit_flip_of_the_tables_is_an_error_or_a_value() {
    let good = image(&[BFV, HOB], SEV, 0x80_4100, 0xaa);
    for cut in (0..good.len()).step_by(509) {
        let short = &good[..cut];
        let _ = Firmware::parse(short);
        let _ = mrtd(short, PageOrder::PerPage);
        let _ = snp(short, 1, None);
    }
    // Flip each bit of the last 256 bytes (the footer table) and of the metadata headers.
    let spans = [good.len() - 256..good.len(), 0x8000..0x8060, 0x9000..0x9040];
    for span in spans {
        for at in span {
            for bit in 0..8 {
                let mut f = good.clone();
                f[at] ^= 1 << bit;
                let _ = mrtd(&f, PageOrder::PerSection).map_err(|e| e.to_string());
                let _ = snp(&f, 2, Some(KernelHashes::new([0; 32], None, "")))
                    .map_err(|e| e.to_string());
            }
        }
    }
}

#[test]
fn rtmr2_extends_cmdline_then_initrd() {
    let none = rtmr2("console=hvc0", None);
    assert_ne!(rtmr2("console=hvc0", Some([0; 48])), none);
    assert_ne!(rtmr2("console=hvc1", None), none);
    assert_ne!(none, [0; 48]);
}
