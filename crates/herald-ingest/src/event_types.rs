//! `EventTypeService`: the event type catalogue (create, get, list, update,
//! archive). Types live in the registry topic beside the endpoints
//! (`herald_registry::event_types`); writes return once this node has read
//! them back. Types are archived, never deleted: an archived type cannot be
//! published, and a publisher still naming it is told so.

use herald_catalog::{EventType, EventTypeUpdate};
use herald_core::time::now_ms;
use herald_proto::v1 as pb;
use herald_proto::v1::event_type_service_server::EventTypeService;
use herald_registry::event_types::parse_schema;
use herald_registry::{Registry, RegistryWriter, StoredEventType};
use tonic::{Request, Response, Status};

use crate::paging;

/// The `EventTypeService` implementation.
#[derive(Clone)]
pub struct EventTypeApi {
    registry: Registry,
    writer: RegistryWriter,
}

impl EventTypeApi {
    /// Serves the catalogue through `writer`, reading from `registry`.
    pub fn new(registry: Registry, writer: RegistryWriter) -> Self {
        Self { registry, writer }
    }

    fn ensure_loaded(&self) -> Result<(), Status> {
        paging::ensure_loaded(&self.registry)
    }

    fn existing(&self, name: &str) -> Result<std::sync::Arc<StoredEventType>, Status> {
        herald_catalog::event_type::validate_name(name).map_err(|e| invalid("name", e))?;
        self.registry
            .event_type(name)
            .ok_or_else(|| Status::not_found(format!("name: event type {name:?} does not exist")))
    }

    async fn store(&self, ty: StoredEventType) -> Result<Response<pb::EventType>, Status> {
        self.writer
            .put_event_type(&ty)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(view(&ty)))
    }
}

fn invalid(field: &str, e: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("{field}: {e}"))
}

fn schema(text: &str) -> Result<Option<serde_json::Value>, Status> {
    parse_schema(text).map_err(Status::invalid_argument)
}

/// The API view of an event type.
pub fn view(t: &StoredEventType) -> pb::EventType {
    let rec = t.to_record();
    pb::EventType {
        name: rec.name,
        description: rec.description,
        schema_json: rec.schema_json,
        archived: rec.archived,
        created_at_ms: rec.created_at_ms,
        updated_at_ms: rec.updated_at_ms,
    }
}

#[tonic::async_trait]
impl EventTypeService for EventTypeApi {
    async fn create_event_type(
        &self,
        request: Request<pb::CreateEventTypeRequest>,
    ) -> Result<Response<pb::EventType>, Status> {
        self.ensure_loaded()?;
        let req = request.into_inner();
        let ty = EventType::new(&req.name, req.description, schema(&req.schema_json)?)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        if self.registry.event_type(&req.name).is_some() {
            return Err(Status::already_exists(format!(
                "name: event type {:?} already exists",
                req.name
            )));
        }
        let now = now_ms();
        self.store(StoredEventType {
            ty,
            created_at_ms: now,
            updated_at_ms: now,
        })
        .await
    }

    async fn get_event_type(
        &self,
        request: Request<pb::GetEventTypeRequest>,
    ) -> Result<Response<pb::EventType>, Status> {
        self.ensure_loaded()?;
        let ty = self.existing(&request.into_inner().name)?;
        Ok(Response::new(view(&ty)))
    }

    async fn list_event_types(
        &self,
        request: Request<pb::ListEventTypesRequest>,
    ) -> Result<Response<pb::ListEventTypesResponse>, Status> {
        self.ensure_loaded()?;
        let req = request.into_inner();
        let size = paging::page_size(req.page_size)?;
        let after = (!req.page_token.is_empty()).then_some(req.page_token.as_str());
        let (page, next_page_token) = paging::split(
            self.registry
                .list_event_types(after, size + 1, req.include_archived),
            size,
            |t| t.ty.name().to_string(),
        );
        Ok(Response::new(pb::ListEventTypesResponse {
            event_types: page.iter().map(|t| view(t)).collect(),
            next_page_token,
        }))
    }

    async fn update_event_type(
        &self,
        request: Request<pb::UpdateEventTypeRequest>,
    ) -> Result<Response<pb::EventType>, Status> {
        self.ensure_loaded()?;
        let req = request.into_inner();
        let mut ty = (*self.existing(&req.name)?).clone();
        let schema = req.schema_json.as_deref().map(schema).transpose()?;
        ty.ty
            .update(EventTypeUpdate {
                description: req.description,
                schema,
                archived: req.archived,
            })
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        ty.updated_at_ms = now_ms();
        self.store(ty).await
    }

    async fn archive_event_type(
        &self,
        request: Request<pb::ArchiveEventTypeRequest>,
    ) -> Result<Response<pb::EventType>, Status> {
        self.ensure_loaded()?;
        let req = request.into_inner();
        let mut ty = (*self.existing(&req.name)?).clone();
        ty.ty
            .update(EventTypeUpdate {
                archived: Some(!req.unarchive),
                ..Default::default()
            })
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        ty.updated_at_ms = now_ms();
        self.store(ty).await
    }
}
