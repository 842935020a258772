//! Picons for the simulated receiver: a small valid PNG per channel, written by hand.
//!
//! Rules: 32x32 RGB, one colour per channel with a white frame; always a valid PNG
//! (signature, IHDR, zlib IDAT, IEND, CRCs), a few hundred bytes.

use std::io::Write;

use flate2::write::ZlibEncoder;
use flate2::{Compression, Crc};

const SIZE: u32 = 32;

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut crc = Crc::new();
    crc.update(kind);
    crc.update(data);
    out.extend_from_slice(&crc.sum().to_be_bytes());
}

/// A 32x32 PNG filled with the colour `rgb` (0xRRGGBB) inside a white frame.
pub(crate) fn picon(rgb: u32) -> Vec<u8> {
    let [_, r, g, b] = rgb.to_be_bytes();
    let mut raw = Vec::with_capacity(((SIZE * 3 + 1) * SIZE) as usize);
    for y in 0..SIZE {
        raw.push(0); // filter: none
        for x in 0..SIZE {
            let frame = x < 2 || y < 2 || x >= SIZE - 2 || y >= SIZE - 2;
            raw.extend_from_slice(&if frame { [255, 255, 255] } else { [r, g, b] });
        }
    }
    let mut z = ZlibEncoder::new(Vec::new(), Compression::default());
    // Writing into a Vec cannot fail.
    let idat = z
        .write_all(&raw)
        .and_then(|()| z.finish())
        .unwrap_or_default();
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&SIZE.to_be_bytes());
    ihdr.extend_from_slice(&SIZE.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8 bit, RGB, deflate, no filter, no interlace
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut png, b"IHDR", &ihdr);
    chunk(&mut png, b"IDAT", &idat);
    chunk(&mut png, b"IEND", &[]);
    png
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn picon_is_a_valid_png() {
        let png = picon(0x3366CC);
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
        assert!(png.len() < 1024);
        // Walk the chunks, checking lengths and CRCs, and inflate the image data.
        let mut rest = &png[8..];
        let mut kinds = Vec::new();
        let mut idat = Vec::new();
        while !rest.is_empty() {
            let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
            let kind = &rest[4..8];
            let data = &rest[8..8 + len];
            let crc = u32::from_be_bytes(rest[8 + len..12 + len].try_into().unwrap());
            let mut c = Crc::new();
            c.update(kind);
            c.update(data);
            assert_eq!(c.sum(), crc);
            if kind == b"IDAT" {
                idat.extend_from_slice(data);
            }
            kinds.push(String::from_utf8_lossy(kind).into_owned());
            rest = &rest[12 + len..];
        }
        assert_eq!(kinds, ["IHDR", "IDAT", "IEND"]);
        let mut pixels = Vec::new();
        flate2::read::ZlibDecoder::new(&idat[..])
            .read_to_end(&mut pixels)
            .unwrap();
        assert_eq!(pixels.len(), ((SIZE * 3 + 1) * SIZE) as usize);
    }
}
