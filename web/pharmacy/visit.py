
from fastapi import APIRouter

router = APIRouter(prefix="/pharmacy", include_in_schema=False)
