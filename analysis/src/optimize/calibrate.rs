//! The cost model's constants, and fitting them to measured nodes (`compart calibrate`).
//!
//! A node's CPU per client request is modelled as
//! `tick_us·ticks + frame_recv_us·frames_recv + frame_sent_us·frames_sent + fact_us·facts +
//! rule_us·rule_work`, every term per request: `facts` are the facts it received, sent and
//! replied, `rule_work` is Σ over its rules of facts derived × (1 + body atoms). The fit is a
//! non-negative least squares over every node of every report, on relative residuals (a node
//! of 2 µs/request counts as much as one of 15), so that no constant goes negative to fit noise.

use serde::{Deserialize, Serialize};

/// CPU costs of one machine (CPU-µs) and how busy instances tick, from `compart calibrate`.
/// The default is the calibration committed as bench/calibration.toml (a CLI test keeps them
/// equal), so the analysis speaks CPU-µs and requests/s even without a file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// CPU-µs of one tick (wakeup, engine pass, kernel), of one frame received, of one sent.
    pub tick_us: f64,
    pub frame_recv_us: f64,
    pub frame_sent_us: f64,
    /// CPU-µs per fact received, sent or replied (decoding, encoding, storing).
    pub fact_us: f64,
    /// CPU-µs per unit of rule work (a derived fact times one plus its rule's body atoms).
    pub rule_us: f64,
    /// Ticks a request waits at each tick it takes part in at a busy component (a visit), ×
    /// closed-loop clients: the outstanding requests wait at the components they visit, about
    /// this many ticks of each, so with one busy visit per request it takes `tick_window /
    /// clients` ticks per request. `compart calibrate` fits it to the runs' requests/s (the
    /// operating point in `optimize::settle`); `optimize::fit` alone gives the median of busy
    /// nodes' ticks per request × clients.
    pub tick_window: f64,
    /// Frames a busy instance receives and sends per tick (one per peer with something to say).
    pub frames_recv_per_tick: f64,
    pub frames_sent_per_tick: f64,
    /// Closed-loop clients of the calibration runs, and the CPU quota of each node (cores):
    /// predicted requests/s are for that quota per machine.
    pub clients: f64,
    pub cpu_per_node: f64,
}

impl Default for Calibration {
    fn default() -> Self {
        Calibration {
            tick_us: 32.43,
            frame_recv_us: 2.17,
            frame_sent_us: 5.183,
            fact_us: 0.3449,
            rule_us: 0.1875,
            tick_window: 2.686,
            frames_recv_per_tick: 1.345,
            frames_sent_per_tick: 1.025,
            clients: 1024.0,
            cpu_per_node: 0.1,
        }
    }
}

/// What one node did per client request, and the CPU it took.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeSample {
    pub name: String,
    pub ticks: f64,
    pub frames_recv: f64,
    pub frames_sent: f64,
    pub facts: f64,
    pub rule_work: f64,
    /// Facts received per request (busy nodes decide the saturation figures).
    pub facts_in: f64,
    /// Closed-loop clients of its run.
    pub clients: f64,
    pub cpu_us: f64,
    /// Its weight in the fit: `1 / instances` of its component in its run, so that each
    /// component of each run counts once (seven alike leader instances are one observation).
    pub weight: f64,
}

impl NodeSample {
    fn features(&self) -> [f64; 5] {
        [self.ticks, self.frames_recv, self.frames_sent, self.facts, self.rule_work]
    }
}

pub const TERMS: [&str; 5] = ["tick", "frame_recv", "frame_sent", "fact", "rule"];

#[derive(Clone, Debug, PartialEq)]
pub struct Fit {
    pub calibration: Calibration,
    /// Per sample: the CPU-µs per request the fitted constants give.
    pub fitted: Vec<f64>,
    /// Root mean square of (fitted - measured) / measured.
    pub rms_relative: f64,
}

/// Whether a node took part in the run: at least one fact per 100 requests. An idle standby's CPU
/// is its start-up, which no per-request term explains.
pub fn busy(s: &NodeSample) -> bool {
    s.cpu_us > 0.0 && s.ticks > 0.0 && s.facts_in >= 0.01
}

/// Fits the constants to the busy `samples`; `cpu_per_node` is the quota the runs had. None when
/// no sample did any work.
pub fn fit(samples: &[NodeSample], cpu_per_node: f64) -> Option<Fit> {
    let used: Vec<&NodeSample> = samples.iter().filter(|s| busy(s)).collect();
    if used.is_empty() {
        return None;
    }
    let x: Vec<[f64; 5]> = used.iter().map(|s| s.features()).collect();
    let y: Vec<f64> = used.iter().map(|s| s.cpu_us).collect();
    let w: Vec<f64> = used.iter().map(|s| s.weight / (s.cpu_us * s.cpu_us)).collect();
    let c = nnls(&x, &y, &w);
    // The saturation figures: medians, robust to the odd node (a standby, a starved one).
    let window = median(used.iter().map(|s| s.ticks * s.clients));
    let recv = median(used.iter().map(|s| s.frames_recv / s.ticks));
    let sent = median(used.iter().map(|s| s.frames_sent / s.ticks));
    let clients = median(used.iter().map(|s| s.clients));
    let calibration = Calibration {
        tick_us: c[0],
        frame_recv_us: c[1],
        frame_sent_us: c[2],
        fact_us: c[3],
        rule_us: c[4],
        tick_window: window,
        frames_recv_per_tick: recv,
        frames_sent_per_tick: sent,
        clients,
        cpu_per_node,
    };
    let fitted: Vec<f64> = samples.iter().map(|s| dot(&s.features(), &c)).collect();
    let rel: Vec<f64> = used.iter().map(|s| (dot(&s.features(), &c) - s.cpu_us) / s.cpu_us).collect();
    let rms_relative = (rel.iter().map(|r| r * r).sum::<f64>() / rel.len() as f64).sqrt();
    Some(Fit { calibration, fitted, rms_relative })
}

fn dot(a: &[f64; 5], b: &[f64; 5]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Weighted non-negative least squares, exactly: with five terms every subset of them (31) can
/// be solved unconstrained and the best one with no negative constant kept, which needs no
/// iteration limit or tolerance tuning.
pub fn nnls<const N: usize>(x: &[[f64; N]], y: &[f64], w: &[f64]) -> [f64; N] {
    let mut best = ([0.0; N], weighted_error(x, y, w, &[0.0; N]));
    for mask in 1u32..(1 << N) {
        let cols: Vec<usize> = (0..N).filter(|i| mask & (1 << i) != 0).collect();
        let k = cols.len();
        let mut a = vec![vec![0.0; k + 1]; k];
        for (r, row) in x.iter().enumerate() {
            for (i, &ci) in cols.iter().enumerate() {
                for (j, &cj) in cols.iter().enumerate() {
                    a[i][j] += w[r] * row[ci] * row[cj];
                }
                a[i][k] += w[r] * row[ci] * y[r];
            }
        }
        let Some(sol) = gauss(a) else { continue };
        if sol.iter().any(|v| *v < 0.0 || !v.is_finite()) {
            continue;
        }
        let mut c = [0.0; N];
        for (i, &ci) in cols.iter().enumerate() {
            c[ci] = sol[i];
        }
        let err = weighted_error(x, y, w, &c);
        if err < best.1 {
            best = (c, err);
        }
    }
    best.0
}

fn weighted_error<const N: usize>(x: &[[f64; N]], y: &[f64], w: &[f64], c: &[f64; N]) -> f64 {
    x.iter()
        .zip(y)
        .zip(w)
        .map(|((row, y), w)| {
            let f: f64 = row.iter().zip(c).map(|(a, b)| a * b).sum();
            w * (f - y) * (f - y)
        })
        .sum()
}

/// Solves the augmented system `a` (k rows of k + 1) by Gaussian elimination with partial
/// pivoting; None when singular (collinear terms: a smaller subset covers them).
fn gauss(mut a: Vec<Vec<f64>>) -> Option<Vec<f64>> {
    let k = a.len();
    let scale = a.iter().flat_map(|r| r[..k].iter()).fold(0.0f64, |m, v| m.max(v.abs()));
    for i in 0..k {
        let p = (i..k).max_by(|&r, &s| a[r][i].abs().total_cmp(&a[s][i].abs()))?;
        if a[p][i].abs() <= scale * 1e-12 {
            return None;
        }
        a.swap(i, p);
        let pivot = a[i].clone();
        for (r, row) in a.iter_mut().enumerate() {
            if r != i {
                let f = row[i] / pivot[i];
                for (v, p) in row.iter_mut().zip(&pivot).skip(i) {
                    *v -= f * p;
                }
            }
        }
    }
    Some((0..k).map(|i| a[i][k] / a[i][i]).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(ticks: f64, fr: f64, fs: f64, facts: f64, work: f64, c: &[f64; 5]) -> NodeSample {
        let cpu = dot(&[ticks, fr, fs, facts, work], c);
        NodeSample {
            name: String::new(),
            ticks,
            frames_recv: fr,
            frames_sent: fs,
            facts,
            rule_work: work,
            facts_in: facts / 2.0,
            clients: 1000.0,
            cpu_us: cpu,
            weight: 1.0,
        }
    }

    #[test]
    fn known_constants_are_recovered() {
        let c = [40.0, 3.0, 5.0, 0.4, 0.15];
        let mut samples = Vec::new();
        for i in 0..12 {
            let f = i as f64;
            samples.push(sample(
                0.002 + 0.0013 * (f % 4.0),
                0.003 + 0.0017 * (f % 5.0),
                0.001 * (f % 3.0),
                2.0 + f,
                (f * 7.0) % 11.0,
                &c,
            ));
        }
        let fit = fit(&samples, 0.1).unwrap();
        let got = &fit.calibration;
        let found = [got.tick_us, got.frame_recv_us, got.frame_sent_us, got.fact_us, got.rule_us];
        for (want, have) in c.iter().zip(found) {
            assert!((want - have).abs() < 1e-6 * want.max(1.0), "{c:?} vs {found:?}");
        }
        assert!(fit.rms_relative < 1e-9);
        assert_eq!(got.cpu_per_node, 0.1);
        assert_eq!(got.clients, 1000.0);
    }

    #[test]
    fn a_term_that_would_go_negative_is_zero() {
        // CPU falls with frames here (noise, or a term that does not exist): the fit keeps the
        // frame term at zero rather than pay for facts with negative frames.
        let x = [[1.0, 0.0], [1.0, 1.0], [2.0, 3.0], [3.0, 1.0]];
        let y = [1.0, 0.9, 1.8, 2.9];
        let c = nnls(&x, &y, &[1.0; 4]);
        assert_eq!(c[1], 0.0);
        assert!((c[0] - 0.95).abs() < 0.05, "{c:?}");
    }

    #[test]
    fn saturation_figures_are_medians_of_busy_nodes() {
        let c = [40.0, 0.0, 0.0, 0.5, 0.0];
        let mut samples = vec![
            sample(0.006, 0.006, 0.003, 4.0, 0.0, &c),
            sample(0.008, 0.008, 0.008, 4.0, 0.0, &c),
            sample(0.010, 0.020, 0.010, 4.0, 0.0, &c),
        ];
        // An idle standby: a few ticks, no facts.
        samples.push(NodeSample { ticks: 0.0001, cpu_us: 0.05, clients: 1000.0, ..Default::default() });
        let fit = fit(&samples, 0.1).unwrap();
        assert!((fit.calibration.tick_window - 8.0).abs() < 1e-9);
        assert!((fit.calibration.frames_recv_per_tick - 1.0).abs() < 1e-9);
        assert!((fit.calibration.frames_sent_per_tick - 1.0).abs() < 1e-9);
    }
}
