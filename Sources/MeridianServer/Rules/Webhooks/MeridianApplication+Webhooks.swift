import Foundation
import MeridianCore
import MeridianStorage

extension MeridianApplication {
    /// The webhook dispatcher over its dead letters: in the registry's PostgreSQL database when
    /// `database` is given, else in `meridian.sqlite` in the data directory. It runs as a
    /// service of the server's group, stopped after the pipeline that feeds it.
    func openWebhooks(database: PostgresDatabase?) async throws -> WebhookDispatcher {
        let store: any WebhookDeadLetterStore
        if let database {
            do {
                store = try await PostgresWebhookDeadLetterStore(database: database)
            } catch let error as PostgresWebhookDeadLetterStore.OpenError {
                throw MeridianStartupError("database.url: \(error.description)")
            }
        } else {
            let path = (configuration.dataDirectory as NSString).appendingPathComponent("meridian.sqlite")
            do {
                store = try SQLiteWebhookDeadLetterStore(path: path)
            } catch let error as SQLiteWebhookDeadLetterStore.OpenError {
                throw MeridianStartupError(error.description)
            }
        }
        return WebhookDispatcher(store: store, logger: logger)
    }
}
