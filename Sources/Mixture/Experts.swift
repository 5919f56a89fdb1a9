// Which upstream axons a mixture asks and how much each counts: the top N of the validator's
// weights.json, mixed by the rule of docs/VALIDATING.md ("Serving a mixture").
import Foundation
import Identity
import Validator

/// One upstream miner of the mixture.
public struct Expert: Sendable, Equatable {
    public var endpoint: Endpoint
    /// Its weight in `weights.json` (what chose it).
    public var weight: Double
    /// The validator's EMA of its phrase loss (what weighs it).
    public var emaLoss: Double
    /// πᵢ, its share of the mixture when every expert answers (they sum to 1).
    public var mixingWeight: Double
}

/// The experts of one `weights.json`, and why the others were passed over.
public struct ExpertRoster: Sendable, Equatable {
    public var experts: [Expert]
    /// One line per entry with weight > 0 that was passed over (no endpoint, another hotkey, …).
    public var skipped: [String]
    /// The `weights.json` step it came from.
    public var step: Int

    /// INFO's model field: the experts and their shares, e.g. "mixture of uid 1 (π 0.562), uid 0 (π 0.438)".
    public var description: String {
        "mixture of " + (experts.isEmpty ? "no experts" : experts.map {
            String(format: "uid %d (π %.3f)", $0.endpoint.uid, $0.mixingWeight)
        }.joined(separator: ", "))
    }

    /// The mixing rule: πᵢ ∝ exp(−emaᵢ) over the chosen experts, the geometric-mean probability
    /// each gave the validator's held-out phrases (the validator's score before its exclusion and
    /// cap), so an expert whose EMA loss is 1 nat higher counts e⁻¹ as much.
    public static func mixingWeights(emaLosses: [Double]) -> [Double] {
        guard let best = emaLosses.min() else { return [] }
        let scores = emaLosses.map { exp(-($0 - best)) }   // shifted by the best: no underflow
        let total = scores.reduce(0, +)
        return scores.map { $0 / total }
    }

    /// The `count` entries of `weights` with the largest weight (> 0, with an EMA; ties: the lower
    /// uid) that have an endpoint of the same uid and hotkey, registered so in `metagraph` when it
    /// has neurons.
    public static func choose(_ weights: WeightsSnapshot, endpoints: [Endpoint], metagraph: Metagraph, count: Int) -> ExpertRoster {
        let byUID = Dictionary(endpoints.map { ($0.uid, $0) }, uniquingKeysWith: { first, _ in first })
        let registered = Dictionary(metagraph.neurons.map { ($0.uid, $0.hotkey) }, uniquingKeysWith: { first, _ in first })
        var chosen: [(endpoint: Endpoint, entry: WeightsSnapshot.Entry, ema: Double)] = []
        var skipped: [String] = []
        let ranked = weights.weights.filter { $0.weight > 0 && $0.weight.isFinite }
            .sorted { $0.weight != $1.weight ? $0.weight > $1.weight : $0.uid < $1.uid }
        for entry in ranked {
            guard chosen.count < count else { break }
            guard let ema = entry.emaLoss, ema.isFinite else { skipped.append("uid \(entry.uid): no EMA loss"); continue }
            guard let endpoint = byUID[entry.uid] else { skipped.append("uid \(entry.uid): not in the endpoints file"); continue }
            guard endpoint.hotkey == entry.hotkey else {
                skipped.append("uid \(entry.uid): the endpoints file names \(endpoint.hotkey), weights.json \(entry.hotkey)"); continue
            }
            if !metagraph.neurons.isEmpty, registered[entry.uid] != entry.hotkey {
                skipped.append("uid \(entry.uid): the metagraph registers \(registered[entry.uid] ?? "no neuron") there, not \(entry.hotkey)"); continue
            }
            chosen.append((endpoint, entry, ema))
        }
        let pis = mixingWeights(emaLosses: chosen.map(\.ema))
        let experts = zip(chosen, pis).map { choice, pi in
            Expert(endpoint: choice.endpoint, weight: choice.entry.weight, emaLoss: choice.ema, mixingWeight: pi)
        }
        return ExpertRoster(experts: experts, skipped: skipped, step: weights.step)
    }
}
