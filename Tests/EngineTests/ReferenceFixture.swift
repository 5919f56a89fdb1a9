import Foundation

/// Tests/EngineTests/Fixtures/reference_forward.json, written by scripts/reference/engine_reference.py.
struct ReferenceFixture: Decodable {
    struct Position: Decodable {
        let position: Int
        let top_ids: [Int32]
        let top_logits: [Float]
        let top_probs: [Float]
        let leftover_mass: Float
        let hidden: [Float]
    }
    struct Row: Decodable {
        let ids: [Int32]
        let positions: [Position]
    }
    let top_k: Int
    let rows: [Row]

    static func load(_ name: String) throws -> Data {
        guard let url = Bundle.module.url(forResource: name, withExtension: nil, subdirectory: "Fixtures") else {
            throw CocoaError(.fileNoSuchFile, userInfo: [NSFilePathErrorKey: "Fixtures/\(name)"])
        }
        return try Data(contentsOf: url)
    }

    static func reference() throws -> ReferenceFixture {
        try JSONDecoder().decode(ReferenceFixture.self, from: load("reference_forward.json"))
    }
}
