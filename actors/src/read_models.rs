//! The read models as impact analysis sees them: [`Projections`] answer which consumers run
//! on a stage.

use neo_model::impact::{ConsumerUse, Consumers};

use crate::projections::{Projections, queries};

#[async_trait::async_trait]
impl Consumers for Projections {
    async fn on_stage(
        &self,
        tenant: &str,
        stage: &str,
        producer_app: &str,
    ) -> Result<Vec<ConsumerUse>, String> {
        let uses = queries::consumers_on_stage(self.pool(), tenant, stage, producer_app)
            .await
            .map_err(|e| e.to_string())?;
        Ok(uses
            .into_iter()
            .map(|u| ConsumerUse {
                consumer_app: u.consumer_app,
                consumer_revision: u.consumer_revision,
                dependency: u.dependency,
            })
            .collect())
    }
}
